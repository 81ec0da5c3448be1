/**
 * Grounding's known pairs: the retriever never gives a training row its own answer (not the row,
 * not its near-duplicate group, not another row with the same answer), a seeded share of training
 * rows gets random pairs, and a grounded question renders exactly as the engine renders it.
 */
import { describe, expect, it } from 'vitest';
import { ArtifactStore, readJsonl, toJsonl } from '../../activities/artifacts';
import { writeRows } from '../../activities/data/arrow-io';
import { normalizeForMatch } from '../../activities/data/dedup';
import { retrieveKnownPairs } from '../../activities/grounding';
import { retrieveAnswers } from '../../activities/evaluation/retrieval';
import { PipelineConfig } from '../../schemas/config';
import { ContextRow, Prediction } from '../../schemas/engine';
import type { GroupedRow } from '../../schemas/rows';
import { groundedQuestion } from '../../serve/grounding';
import { tempDir } from '../integration/harness';

const products = ['router', 'webcam', 'speaker', 'kettle', 'e-reader', 'headphones', 'monitor', 'drone'];
/** Rows whose nearest neighbour is often their own near duplicate or a row with the same answer. */
function rows(count: number, offset = 0): GroupedRow[] {
  return Array.from({ length: count }, (_, i) => {
    const n = i + offset;
    const product = products[n % products.length]!;
    const topic = Math.floor(n / products.length) % 6;
    return {
      id: `r${n}`,
      sourceRow: n,
      question: `How do I ${['reset', 'pair', 'charge', 'clean', 'mount', 'update'][topic]} the ${product}? (${n % 3 === 0 ? 'asked again' : 'once'})`,
      // Every third row shares its answer with another row of the same topic and product.
      answer: n % 3 === 0 ? `Same answer for the ${product}, topic ${topic}.` : `Answer ${n} about the ${product}.`,
      category: null,
      product,
      fact: null,
      groupId: `g${Math.floor(n / 2)}`, // pairs of rows are near duplicates
    };
  });
}

async function contextsFor(distractors: number) {
  const dir = tempDir();
  const config = PipelineConfig.parse({
    name: 'x',
    data: { sample: { rows: 10 } },
    storage: { artifacts: dir },
    retrieval: { method: 'lexical' },
    training: { grounding: { k: 3, distractors } },
  });
  const store = new ArtifactStore(dir);
  const trainRows = rows(200);
  const train = await writeRows(store, trainRows);
  const validation = await writeRows(store, rows(20, 200));
  const result = await retrieveKnownPairs({ config, configDir: dir, train, mode: 'training', rows: [train, validation] });
  return { result, trainRows, lines: await readJsonl(store, result.outputs.contexts, ContextRow) };
}

describe('known pairs for grounded training', () => {
  it('never gives a training row its own answer: not itself, not its near duplicates, not the same answer', async () => {
    const { lines, trainRows, result } = await contextsFor(0);
    const byId = new Map(trainRows.map((r) => [r.id, r]));
    expect(lines).toHaveLength(220);
    expect(result.stats.distractorRows).toBe(0);
    let checked = 0;
    for (const line of lines.filter((l) => byId.has(l.id))) {
      const row = byId.get(line.id)!;
      expect(line.context).toHaveLength(3);
      for (const pair of line.context) {
        const known = byId.get(pair.id)!;
        expect(pair.id).not.toBe(row.id);
        expect(known.groupId).not.toBe(row.groupId);
        expect(normalizeForMatch(known.answer)).not.toBe(normalizeForMatch(row.answer));
        checked++;
      }
    }
    // Every row is its own nearest neighbour (similarity 1), so these checks fail if an exclusion is lost.
    expect(checked).toBe(600);
  });

  it('gives a seeded share of training rows random pairs, and never a validation row', async () => {
    const first = await contextsFor(0.25);
    const again = await contextsFor(0.25);
    expect(first.lines).toEqual(again.lines);
    const share = first.result.stats.distractorRows / 200;
    expect(share).toBeGreaterThan(0.15);
    expect(share).toBeLessThan(0.35);
    const randomised = first.lines.filter((l) => l.context.every((p) => p.similarity === 0));
    expect(randomised.length).toBe(first.result.stats.distractorRows);
    expect(randomised.every((l) => Number(l.id.slice(1)) < 200)).toBe(true);
  });
});

describe('knowledge rows beside the training split', () => {
  it('are searched by grounding and by the retrieval baseline, and never hand a training row its own answer', async () => {
    const dir = tempDir();
    const config = PipelineConfig.parse({
      name: 'x',
      data: { sample: { rows: 10 } },
      storage: { artifacts: dir },
      retrieval: { method: 'lexical', knowledge: [{ path: 'faq.csv' }] },
      training: { grounding: { k: 3, distractors: 0 } },
    });
    const store = new ArtifactStore(dir);
    const trainRows = rows(40);
    // A knowledge row per product, and one that gives a training row's answer to another question.
    const knowledgeRows: GroupedRow[] = products.map((product, n) => ({
      ...rows(1, n)[0]!,
      id: `k1:row-${n + 1}`,
      question: `What is the warranty on the ${product}?`,
      answer: `The ${product} has a ${n + 1}-year warranty.`,
      groupId: `k1:row-${n + 1}`,
    }));
    knowledgeRows.push({
      ...knowledgeRows[0]!,
      id: 'k1:row-9',
      groupId: 'k1:row-9',
      question: 'How do I reset the router? (asked once more)',
      answer: trainRows[0]!.answer,
    });
    const train = await writeRows(store, trainRows);
    const knowledge = await writeRows(store, knowledgeRows);
    const parts = { config, configDir: dir, train, knowledge };

    const questions = await store.put(
      toJsonl(
        ['drone', 'kettle'].map((product) => ({
          id: `t-${product}`,
          question: `How long is the warranty on the ${product}?`,
          reference: '',
          fact: null,
          category: null,
          product,
        })),
      ),
      '.jsonl',
      2,
    );
    const answers = await retrieveAnswers({ ...parts, questions });
    expect(answers.stats.indexRows).toBe(49);
    expect((await readJsonl(store, answers.outputs.answers, Prediction)).map((p) => p.prediction)).toEqual([
      'The drone has a 8-year warranty.',
      'The kettle has a 4-year warranty.',
    ]);

    // The same question in the validation split (never excluded) gets the knowledge row with r0's answer; r0 must not.
    const validation = await writeRows(store, [{ ...trainRows[0]!, id: 'v0', groupId: 'v0' }]);
    const grounded = await retrieveKnownPairs({ ...parts, mode: 'training', rows: [train, validation] });
    const pairsOf = async (id: string) =>
      (await readJsonl(store, grounded.outputs.contexts, ContextRow)).find((line) => line.id === id)!.context.map((pair) => pair.id);
    expect(await pairsOf('v0')).toContain('k1:row-9');
    expect(await pairsOf('r0')).not.toContain('k1:row-9');
  });
});

describe('a grounded question', () => {
  it('renders the pairs in the templates the export records, filling braces in the text once', () => {
    const format = {
      grounding: {
        template: 'Known:\n{pairs}\n\nQuestion: {question}',
        pairTemplate: 'Q: {question} / A: {answer}',
        pairSeparator: '\n',
      },
    };
    const pairs = [
      { question: 'Is it {waterproof}?', answer: 'Yes, to {pairs} metres.' },
      { question: 'Colour?', answer: 'Black.' },
    ];
    expect(groundedQuestion(format, 'Does it {float}?', pairs)).toBe(
      'Known:\nQ: Is it {waterproof}? / A: Yes, to {pairs} metres.\nQ: Colour? / A: Black.\n\nQuestion: Does it {float}?',
    );
    expect(groundedQuestion(format, 'Plain?', [])).toBe('Plain?');
    expect(() => groundedQuestion({ grounding: null }, 'Q?', pairs)).toThrow(/no grounding templates.*re-run the export/);
  });
});
