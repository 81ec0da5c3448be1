/**
 * The sweep report: every trial side by side with its state and numbers, each tuned model's
 * evaluation beside the shared baselines, and the two plots (metric by LoRA rank with full
 * fine-tuning as reference lines; validation loss by step with the rungs marked and stopped trials
 * dashed).
 */
import { describe, expect, it } from 'vitest';
import { lineChartSvg } from '../../activities/report/charts';
import { renderMarkdown, type Block } from '../../activities/report/document';
import { sweepReportBlocks, type SweepReportData } from '../../activities/report/sweep-report';
import type { SweepManifest, SweepTrial } from '../../schemas/manifests';

const trial = (n: number, point: SweepTrial['point'], label: string, extra: Partial<SweepTrial>): SweepTrial => ({
  trial: n,
  point,
  label,
  status: 'finished',
  steps: 16,
  rungs: [{ step: 4, validationLoss: 2 - n / 10 }],
  validationLoss: 1.5 - n / 10,
  metric: null,
  trainSeconds: 10 * n,
  tokensPerSecond: 100 + n,
  trainableParameters: 1000 * n,
  peakMemoryBytes: 2 ** 20 * 300,
  model: { uri: 'file:///store/model', sha256: 'a'.repeat(64), bytes: 2 ** 20 * 5 * n, rows: null },
  evaluation: null,
  ...extra,
});

const scores = (rougeL: number) => ({ rougeL, factualAccuracy: rougeL / 2, perplexity: 30 + rougeL });

function data(): SweepReportData {
  const trials = [
    trial(1, { strategy: 'full', learningRate: 1e-4 }, 'full lr 0.0001', {
      metric: 0.5,
      evaluation: { 'tuned-grounded': scores(0.5), tuned: scores(0.3) },
    }),
    trial(2, { strategy: 'lora', learningRate: 1e-3, lora: { rank: 4, alpha: 8 } }, 'lora r4 a8 lr 0.001', {
      metric: 0.6,
      best: true,
      evaluation: { 'tuned-grounded': scores(0.6), tuned: scores(0.35) },
    }),
    trial(3, { strategy: 'lora', learningRate: 1e-3, lora: { rank: 8, alpha: 16 } }, 'lora r8 a16 lr 0.001', {
      metric: 0.55,
      evaluation: { 'tuned-grounded': scores(0.55), tuned: scores(0.32) },
    }),
    trial(4, { strategy: 'lora', learningRate: 1e-3, lora: { rank: 16, alpha: 32 } }, 'lora r16 a32 lr 0.001', {
      status: 'stopped',
      stoppedAtStep: 4,
      steps: 4,
      validationLoss: null,
    }),
    trial(5, { strategy: 'lora', learningRate: 1e-3, lora: { rank: 32, alpha: 64 } }, 'lora r32 a64 lr 0.001', {
      status: 'failed',
      error: 'out of memory',
      steps: 0,
      rungs: [],
      validationLoss: null,
      model: null,
    }),
  ];
  const manifest: SweepManifest = {
    manifestVersion: 1,
    kind: 'sweep',
    sweepId: 'shop-sweep-1',
    pipeline: 'shop',
    status: 'completed',
    error: null,
    startedAt: '2026-12-02T00:00:00.000Z',
    updatedAt: '2026-12-02T01:00:00.000Z',
    startedBy: null,
    config: { file: null, hash: 'h', given: {}, resolved: null },
    code: { version: '0.1.0', commit: null, sources: 's' },
    data: null,
    steps: [],
    metric: 'rougeL',
    totalSteps: 16,
    rungs: [4],
    trials,
    winner: 2,
    metrics: { base: scores(0.2), retrieval: { rougeL: 0.4, factualAccuracy: 0.3 } },
    gate: { verdict: 'candidate', system: 'tuned-grounded', results: [], reasons: [] },
    trialSteps: 52,
    gridSteps: 80,
    artifacts: {},
  };
  const curves = new Map(
    trials
      .filter((t) => t.model)
      .map((t) => [
        t.trial,
        [0, 4, 8, 12, 16].filter((s) => s <= t.steps).map((step) => ({ step, validationLoss: 3 - step / 10 - t.trial / 20 })),
      ]),
  );
  return { manifest, curves };
}

const table = (blocks: Block[], firstHeader: string) =>
  blocks.find((b): b is Extract<Block, { kind: 'table' }> => b.kind === 'table' && b.header[0] === firstHeader)!;
const image = (blocks: Block[], file: string) =>
  new TextDecoder().decode(blocks.find((b): b is Extract<Block, { kind: 'image' }> => b.kind === 'image' && b.file === file)!.data);

describe('sweep report', () => {
  const blocks = sweepReportBlocks(data());
  const markdown = renderMarkdown(blocks);

  it('names the winner, its metric and its gate verdict', () => {
    expect(markdown).toContain('**Best: trial 2** (`lora r4 a8 lr 0.001`), ROUGE-L F1 0.6000.');
    expect(markdown).toContain('**Promotion candidate**');
    expect(markdown).toContain(
      'Successive halving compared the trials by validation loss at steps 4 and stopped 1: 52 trial steps trained, against 80',
    );
  });

  it('lists every trial with its state, rung loss, speed, memory, size and parameters', () => {
    const trials = table(blocks, 'trial');
    expect(trials.header).toEqual([
      'trial',
      'point',
      'state',
      'steps',
      'loss at 4',
      'validation loss',
      'ROUGE-L F1',
      'train s',
      'tokens/s',
      'peak memory MiB',
      'trainable parameters',
      'model MiB',
    ]);
    expect(trials.rows.map((r) => r.slice(0, 4))).toEqual([
      ['1', 'full lr 0.0001', 'finished', 16],
      ['2 (best)', 'lora r4 a8 lr 0.001', 'finished', 16],
      ['3', 'lora r8 a16 lr 0.001', 'finished', 16],
      ['4', 'lora r16 a32 lr 0.001', 'stopped at step 4', 4],
      ['5', 'lora r32 a64 lr 0.001', 'failed: out of memory', 0],
    ]);
    expect(trials.rows[2]!.slice(4)).toEqual(['1.7000', '1.2000', '0.5500', '30.0', '103.0', '300', 3000, '15.0']);
    expect(trials.rows[4]!.slice(4)).toEqual([null, null, null, '50.0', '105.0', '300', 5000, null]);
  });

  it('puts each tuned model beside the baselines every trial was compared with', () => {
    const evaluation = table(blocks, 'system');
    expect(evaluation.header).toEqual(['system', 'ROUGE-L F1', 'factual accuracy', 'perplexity, general English']);
    expect(evaluation.rows.map((r) => r[0])).toEqual([
      'trial 1 full lr 0.0001, tuned',
      'trial 1 full lr 0.0001, tuned + grounding',
      'trial 2 lora r4 a8 lr 0.001, tuned',
      'trial 2 lora r4 a8 lr 0.001, tuned + grounding',
      'trial 3 lora r8 a16 lr 0.001, tuned',
      'trial 3 lora r8 a16 lr 0.001, tuned + grounding',
      'base (untuned)',
      'retrieval',
    ]);
    expect(evaluation.rows.at(-1)).toEqual(['retrieval', '0.400', '0.300', null]);
  });

  it('plots the metric by rank for the finished LoRA trials, full fine-tuning as a reference line', () => {
    const svg = image(blocks, 'metric-by-rank.svg');
    expect(svg).toContain('ROUGE-L F1 by LoRA rank');
    // Ranks 4 and 8 finished (16 stopped, 32 failed): one line of two points.
    expect(svg.match(/<polyline/g)).toHaveLength(1);
    expect(svg.match(/<circle/g)).toHaveLength(2);
    expect(svg).toContain('LoRA lr 0.001, alpha 2 x rank at 4: 0.6000');
    expect(svg).toContain('<title>full fine-tuning lr 0.0001: 0.5000</title>');
  });

  it('plots every trained trial by step, the stopped one dashed, the rung marked', () => {
    const svg = image(blocks, 'validation-loss.svg');
    const lines = svg.match(/<polyline[^>]*>/g)!;
    expect(lines).toHaveLength(4); // the failed trial never trained
    expect(lines.filter((l) => l.includes('stroke-dasharray'))).toHaveLength(1);
    expect(svg).toContain('>rung 1</text>');
    expect(svg).toContain('4: lora r16 a32 lr 0.001 at 4:');
    expect(svg).not.toContain('4: lora r16 a32 lr 0.001 at 8:');
  });
});

describe('line chart', () => {
  it('spaces a log axis by powers of two and scales y to the values', () => {
    const svg = lineChartSvg({
      title: 't',
      xLabel: 'rank',
      yLabel: 'value',
      xTicks: [4, 8, 16],
      logX: true,
      series: [{ name: 's', points: [4, 8, 16].map((x) => ({ x, y: x })) }],
    });
    const [a, b, c] = [...svg.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => ({
      x: Number(m[1]),
      y: Number(m[2]),
    })) as Array<{
      x: number;
      y: number;
    }>;
    expect(b!.x - a!.x).toBeCloseTo(c!.x - b!.x, 0);
    // Higher values are drawn higher up.
    expect(a!.y).toBeGreaterThan(b!.y);
    expect(b!.y).toBeGreaterThan(c!.y);
  });
});
