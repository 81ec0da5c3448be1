import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderHtml, renderMarkdown } from '../../activities/report/document';
import { comparisonSentence, runReportBlocks, writeReportFolder, type RunReportData } from '../../activities/report/run-report';
import { ScoreMetrics, type Prediction, type SystemName } from '../../schemas/engine';
import { checkGates } from '../../workflows/gates';
import { Gate } from '../../schemas/config';
import { tempDir } from '../integration/harness';

const rows = Array.from({ length: 30 }, (_, n) => ({
  id: `row-${n}`,
  question: `How long does the battery of model ${n} last?`,
  reference: `About ${n} hours | on one charge.`,
  fact: `${n} hours`,
  category: n % 2 ? 'spec' : 'how-to',
  product: null,
}));
const none = Object.fromEntries(Object.keys(ScoreMetrics.shape).map((k) => [k, null])) as Record<keyof ScoreMetrics, null>;
const scoreMetrics = (rougeL: number, factualAccuracy: number): ScoreMetrics => ({ ...none, rougeL, factualAccuracy, factRows: 30 });
const scores = (rougeL: number, factualAccuracy: number) => ({
  rows: 30,
  metrics: {
    ...scoreMetrics(rougeL, factualAccuracy),
    rouge1: rougeL,
    rouge2: rougeL / 2,
    bleu: rougeL * 50,
    chrf: rougeL * 80,
    predictionWordsMean: 9,
  },
  byCategory: {
    spec: { rows: 15, metrics: scoreMetrics(rougeL, factualAccuracy) },
    'how-to': { rows: 15, metrics: scoreMetrics(rougeL, factualAccuracy) },
  },
});
const answers = (system: SystemName, text: (n: number) => string) =>
  new Map<string, Prediction>(rows.map((row, n) => [row.id, { ...row, system, prediction: text(n) }]));

function reportData(): RunReportData {
  const metrics = {
    tuned: { rougeL: 0.61, factualAccuracy: 0.4, bleu: 30.5, perplexity: 21.3 },
    base: { rougeL: 0.11, factualAccuracy: 0, perplexity: 20.1 },
    retrieval: { rougeL: 0.33, factualAccuracy: 0.1 },
  };
  return {
    pipeline: 'electronics-support',
    runId: 'run-1',
    verdict: checkGates([Gate.parse({ metric: 'rougeL', relativeTo: 'retrieval' }), Gate.parse({ metric: 'bleu', min: 90 })], metrics),
    review: null,
    metrics,
    scores: {
      systems: { tuned: scores(0.61, 0.4), base: scores(0.11, 0), retrieval: scores(0.33, 0.1) },
      normalisation: 'factualAccuracy: whole words.',
      libraries: { sacrebleu: '2.5.1', rouge_score: '0.1.2' },
    },
    answers: {
      tuned: answers('tuned', (n) => `About ${n} hours.`),
      base: answers('base', () => 'I am a helpful <assistant>.'),
      retrieval: answers('retrieval', () => 'About 1 hours.'),
    },
    rows,
    knownPairs: new Map(),
    testRows: 910,
    seed: 42,
    decoding: { repetitionPenalty: 1.1, noRepeatNgramSize: 4, stopOnRepetition: true, endProbability: 0.5 },
    retrieval: { method: 'embedding', scope: 'product-first', k: 0 },
    maxNewTokens: 64,
    retrievalIndexRows: 96,
    notes: [],
    generation: [{ system: 'tuned', rows: 30, newTokens: 300, tokensPerSecond: 120.5, truncated: 0 }],
    forgetting: {
      text: 'assets/general-english.txt',
      textSha256: 'a'.repeat(64),
      base: { perplexity: 20.1, tokens: 3800 },
      tuned: { perplexity: 21.3, tokens: 3800 },
      ratio: 21.3 / 20.1,
    },
    training: {
      steps: 12,
      resumedFromStep: null,
      trainableParameters: 4884480,
      device: 'cpu',
      baseModel: { name: 'default', kind: 'gguf', path: '/m.gguf', sha256: 'b'.repeat(64), revision: 'conversion 1' },
      metrics: {
        initialValidationLoss: 2.8,
        finalValidationLoss: 2.3,
        bestValidationLoss: 2.3,
        bestStep: 12,
        lastValidationLoss: 2.3,
        steps: 12,
        totalSteps: 12,
        pausedAtStep: null,
        stoppedEarly: 0,
        trainRows: 96,
        validationRows: 32,
        trainableParameters: 4884480,
        trainTokens: 9000,
        trainSeconds: 120,
        tokensPerSecond: 75,
        wallSeconds: 150,
        peakMemoryBytes: 2e9,
        processes: 1,
      },
    },
    exportMetrics: {
      onnxBytes: 540e6,
      parityTokens: 60,
      parityPrompts: 4,
      paritySeconds: 2,
      exportSeconds: 30,
      weightBits: 32,
      tokenAgreement: null,
      perplexityIncrease: null,
    },
    trainingCurve: Uint8Array.from([0x89, 0x50, 0x4e, 0x47]),
    dataReport: {
      pipeline: 'electronics-support',
      source: { kind: 'sample', path: 'sample.jsonl', format: 'jsonl', snapshot: true },
      stages: [{ stage: 'ingest', rowsIn: 100, rowsOut: 98, reused: false, seconds: 0.1, details: { quarantined: 2 } }],
      splits: { train: 80, validation: 9, test: 9 },
      splitsByCategory: {},
      accounting: { sourceRows: 100, inSplits: 98, quarantined: 2, removed: 0, balanced: true },
      feedback: [
        {
          path: 'feedback.jsonl',
          sha256: 'c'.repeat(64),
          rowsIn: 12,
          rejected: 2,
          quarantined: 1,
          removedByCleaning: 1,
          duplicates: 1,
          repeatsHeldOut: { validation: 1, test: 0 },
          added: 6,
          balanced: true,
        },
      ],
      trainWithFeedback: 86,
      knowledge: [
        {
          path: 'faq.csv',
          rowsIn: 40,
          quarantined: 1,
          removedByCleaning: 2,
          duplicates: 1,
          repeatsData: { train: 3, validation: 0, test: 1 },
          indexed: 32,
          balanced: true,
        },
      ],
    },
  };
}

describe('run report', () => {
  it('writes Markdown with its images beside it and a self-contained HTML file, both with the metric table', async () => {
    const dir = tempDir();
    await writeReportFolder(dir, 'Run report', runReportBlocks(reportData()));
    expect(readdirSync(dir).sort()).toEqual(['metrics.svg', 'report.html', 'report.md', 'training-curve.png']);
    const markdown = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(markdown).toContain('| metric | tuned | base (untuned) | retrieval |');
    expect(markdown).toContain('| ROUGE-L F1 | 0.610 | 0.110 | 0.330 |');
    expect(markdown).toContain('| factual accuracy | 0.400 | 0.000 | 0.100 |');
    expect(markdown).toContain('| perplexity, general English | 21.30 | 20.10 | - |');
    expect(markdown).toContain('**Not promoted**: bleu >= 90: tuned 30.5.');
    expect(markdown).toContain('| faq.csv | 40 | 1 | 2 | 1 | 3 | 0 | 1 | 32 | balanced |');
    expect(markdown).toContain('it has 86 rows, 80 from the data and 6 from feedback');
    expect(markdown).toContain('| feedback.jsonl | 12 | 2 | 1 | 1 | 1 | 1 | 0 | 6 | balanced |');
    expect(markdown).toContain('![Training curve](training-curve.png)');
    expect(markdown).toContain('## Sample answers (20)');
    expect(markdown).toContain('### Splits'); // the data report, nested one level down
    expect(markdown).toContain('About 3 hours \\| on one charge.'); // pipes escaped inside table cells

    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toMatch(/(src|href)="(?!data:)/); // nothing outside the file
    expect(html).toContain('src="data:image/png;base64,iVBORw=="');
    expect(html).toContain('src="data:image/svg+xml;base64,');
    expect(html).toContain('<td>ROUGE-L F1</td><td class="num">0.610</td>');
    expect(html).toContain('I am a helpful &lt;assistant&gt;.');
  });

  it('says which precision was evaluated: float32, or the quantized export with its agreement and perplexity change', () => {
    const exportText = (data: RunReportData) => {
      const block = runReportBlocks(data).find((b) => b.kind === 'paragraph' && b.text.startsWith('Export:'));
      return block?.kind === 'paragraph' ? block.text : '';
    };
    expect(exportText(reportData())).toContain('float32 weights, 540 MB; 60 greedy tokens over 4 prompts identical');
    const quantized = reportData();
    quantized.exportMetrics = {
      ...quantized.exportMetrics,
      weightBits: 8,
      onnxBytes: 166e6,
      tokenAgreement: 0.9375,
      perplexityIncrease: 0.0123,
    };
    const text = exportText(quantized);
    expect(text).toContain('int8 weights (quantized by ONNX Runtime from the float32 export');
    expect(text).toContain("166 MB; it reproduces 93.8% of float32's greedy tokens");
    expect(text).toContain('1.23% higher');
    expect(text).toContain('come from the int8 export');
  });

  it('samples are a fixed draw of evaluation rows and show every system beside the reference', () => {
    const samples = (data: RunReportData) => {
      const blocks = runReportBlocks(data);
      const heading = blocks.findIndex((b) => b.kind === 'heading' && b.text.startsWith('Sample answers'));
      const table = blocks[heading + 1]!;
      return table.kind === 'table' ? table : undefined;
    };
    const first = samples(reportData())!;
    expect(first.header).toEqual(['question', 'reference', 'tuned', 'base (untuned)', 'retrieval']);
    expect(first.rows).toHaveLength(20);
    expect(samples(reportData())!.rows).toEqual(first.rows);
    for (const [question, reference, tuned] of first.rows) {
      const n = Number(/model (\d+)/.exec(String(question))![1]);
      expect([reference, tuned]).toEqual([`About ${n} hours | on one charge.`, `About ${n} hours.`]);
    }
  });

  it('says a run with an undecided satisfaction gate awaits review, naming the gate', () => {
    const data = reportData();
    data.verdict = checkGates([Gate.parse({ metric: 'satisfaction', min: 0.9 }), Gate.parse({ metric: 'rougeL', min: 0.1 })], data.metrics);
    const markdown = renderMarkdown(runReportBlocks(data));
    expect(markdown).toContain('**Awaiting review**: every measured gate passed; `satisfaction >= 0.9` is decided by human review');
    expect(markdown).not.toContain('Promotion candidate');
  });

  it('says plainly whether training beat every baseline, at equal length too, with the answer length beside it', () => {
    const wins = {
      'tuned-grounded': {
        rougeL: 0.15,
        semanticSimilarity: 0.37,
        rougeLLengthMatched: 0.15,
        semanticSimilarityLengthMatched: 0.37,
        predictionWordsMean: 13.8,
      },
      'base-grounded': {
        rougeL: 0.13,
        semanticSimilarity: 0.35,
        rougeLLengthMatched: 0.13,
        semanticSimilarityLengthMatched: 0.29,
        predictionWordsMean: 42.8,
      },
      retrieval: {
        rougeL: 0.12,
        semanticSimilarity: 0.28,
        rougeLLengthMatched: 0.1,
        semanticSimilarityLengthMatched: 0.22,
        predictionWordsMean: 32.2,
      },
    };
    expect(comparisonSentence(wins, 'tuned-grounded')).toBe(
      "**Training paid off**: tuned + grounding beats base + grounding, retrieval on ROUGE-L and semantic similarity, also with their answers cut to its answers' length. Its answers average 13.8 words.",
    );
    // Winning the plain ROUGE-L by brevity, losing once the baseline is cut to the same length.
    const brief = { ...wins, 'base-grounded': { ...wins['base-grounded'], rougeLLengthMatched: 0.16 } };
    expect(comparisonSentence(brief, 'tuned-grounded')).toBe(
      '**Training did not beat every baseline**: tuned + grounding does not beat base + grounding on ROUGE-L at equal length (0.160 against 0.150). Its answers average 13.8 words.',
    );
    expect(comparisonSentence({ tuned: { rougeL: 0.2 } }, 'tuned')).toBe('');
    const echoed = { ...wins, 'tuned-grounded': { ...wins['tuned-grounded'], questionEchoSimilarity: 0.492 } };
    expect(comparisonSentence(echoed, 'tuned-grounded')).toContain(
      'Its answers average 13.8 words. The question itself, given as the answer, would score 0.492 on semantic similarity.',
    );
  });

  it('renders a passing verdict and inline formatting in both formats', () => {
    const data = reportData();
    data.verdict = checkGates([Gate.parse({ metric: 'rougeL', relativeTo: 'retrieval' })], {
      tuned: { rougeL: 0.6 },
      retrieval: { rougeL: 0.3 },
    });
    const blocks = runReportBlocks(data);
    expect(renderMarkdown(blocks)).toContain('**Promotion candidate**: the tuned model passed every gate.');
    expect(renderHtml('t', blocks)).toContain('<p><strong>Promotion candidate</strong>: the tuned model passed every gate.</p>');
    expect(renderHtml('t', [{ kind: 'paragraph', text: 'Run `a<b`.' }])).toContain('<p>Run <code>a&lt;b</code>.</p>');
  });
});
