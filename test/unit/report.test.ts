import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Prediction } from '../../activities/evaluate';
import { renderHtml, renderMarkdown } from '../../activities/report/document';
import { evaluationReportBlocks, writeReportFolder, type EvaluationReportData } from '../../activities/report/evaluation-report';
import type { SystemName } from '../../schemas/manifests';
import { checkGates } from '../../workflows/gates';
import { Gate } from '../../schemas/config';
import { tempDir } from '../integration/harness';

const rows = Array.from({ length: 30 }, (_, n) => ({
  id: `row-${n}`,
  question: `How long does the battery of model ${n} last?`,
  reference: `About ${n} hours | on one charge.`,
  fact: `${n} hours`,
  category: n % 2 ? 'spec' : 'how-to',
}));
const scores = (rougeL: number, factualAccuracy: number) => ({
  rows: 30,
  metrics: { rougeL, rouge1: rougeL, rouge2: rougeL / 2, bleu: rougeL * 50, chrf: rougeL * 80, factualAccuracy, predictionWordsMean: 9 },
  byCategory: {
    spec: { rows: 15, metrics: { rougeL, factualAccuracy } },
    'how-to': { rows: 15, metrics: { rougeL, factualAccuracy } },
  },
});
const answers = (system: SystemName, text: (n: number) => string) =>
  new Map<string, Prediction>(rows.map((row, n) => [row.id, { ...row, system, prediction: text(n) }]));

function reportData(): EvaluationReportData {
  const metrics = {
    tuned: { rougeL: 0.61, factualAccuracy: 0.4, bleu: 30.5 },
    base: { rougeL: 0.11, factualAccuracy: 0 },
    retrieval: { rougeL: 0.33, factualAccuracy: 0.1 },
  };
  return {
    pipeline: 'electronics-support',
    runId: 'run-1',
    verdict: checkGates([Gate.parse({ metric: 'rougeL', relativeTo: 'retrieval' }), Gate.parse({ metric: 'bleu', min: 90 })], metrics),
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
    testRows: 910,
    seed: 42,
    settings: { maxNewTokens: 64, retrievalIndexRows: 96, baseSkipped: null },
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
      metrics: { initialValidationLoss: 2.8, finalValidationLoss: 2.3 },
    },
    exportMetrics: { onnxBytes: 540e6, parityTokens: 60, parityPrompts: 4 },
    trainingCurve: Uint8Array.from([0x89, 0x50, 0x4e, 0x47]),
    dataReport: {
      pipeline: 'electronics-support',
      source: { kind: 'sample', path: 'sample.jsonl' },
      stages: [{ stage: 'ingest', rowsIn: 100, rowsOut: 98, reused: false, seconds: 0.1, details: { quarantined: 2 } }],
      splits: { train: 80, validation: 9, test: 9 },
      splitsByCategory: {},
      accounting: { sourceRows: 100, inSplits: 98, quarantined: 2, removed: 0, balanced: true },
    },
  };
}

describe('run report', () => {
  it('writes Markdown with its images beside it and a self-contained HTML file, both with the metric table', async () => {
    const dir = tempDir();
    await writeReportFolder(dir, 'Run report', evaluationReportBlocks(reportData()));
    expect(readdirSync(dir).sort()).toEqual(['metrics.svg', 'report.html', 'report.md', 'training-curve.png']);
    const markdown = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(markdown).toContain('| metric | tuned | base (untuned) | retrieval |');
    expect(markdown).toContain('| ROUGE-L F1 | 0.610 | 0.110 | 0.330 |');
    expect(markdown).toContain('| factual accuracy | 0.400 | 0.000 | 0.100 |');
    expect(markdown).toContain('| perplexity, general English | 21.30 | 20.10 | - |');
    expect(markdown).toContain('**Not promoted**: bleu >= 90: tuned 30.5.');
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

  it('samples are a fixed draw of evaluation rows and show every system beside the reference', () => {
    const samples = (data: EvaluationReportData) => {
      const blocks = evaluationReportBlocks(data);
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

  it('renders a passing verdict and inline formatting in both formats', () => {
    const data = reportData();
    data.verdict = checkGates([Gate.parse({ metric: 'rougeL', relativeTo: 'retrieval' })], {
      tuned: { rougeL: 0.6 },
      retrieval: { rougeL: 0.3 },
    });
    const blocks = evaluationReportBlocks(data);
    expect(renderMarkdown(blocks)).toContain('**Promotion candidate**: the tuned model passed every gate.');
    expect(renderHtml('t', blocks)).toContain('<p><strong>Promotion candidate</strong>: the tuned model passed every gate.</p>');
    expect(renderHtml('t', [{ kind: 'paragraph', text: 'Run `a<b`.' }])).toContain('<p>Run <code>a&lt;b</code>.</p>');
  });
});
