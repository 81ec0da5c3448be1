/**
 * The sweep report: `report.md` and a self-contained `report.html` in the sweep folder, read from
 * `sweep.json` and each trial's training history. It holds the outcome (the winner and its gate),
 * every trial side by side (training time, speed, memory, size, validation loss at each rung, the
 * evaluation of each tuned model against the shared baselines) and two plots: the sweep's metric
 * against LoRA rank (full fine-tuning as reference lines) and every trial's validation loss over
 * the steps, with the successive-halving rungs marked.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SYSTEMS, TrainingHistory, type SystemName } from '../../schemas/engine';
import type { MetricTable, SweepManifest, SweepTrial } from '../../schemas/manifests';
import { parseJsonFile, type StepStore } from '../artifacts';
import { lineChartSvg, type LineSeries } from './charts';
import type { Block, Cell } from './document';
import { METRIC_ROWS, SYSTEM_LABEL, fixedCell as round } from './metric-table';
import { verdictSentence } from './run-report';

export interface SweepReportData {
  manifest: SweepManifest;
  /** Each trial's validation losses over the steps (its last leg's history: every leg before it included). */
  curves: Map<number, Array<{ step: number; validationLoss: number }>>;
}

/** The metrics of each trial's evaluation the report compares, with the forgetting check. */
const COMPARED = ['rougeL', 'factualAccuracy', 'semanticSimilarity', 'semanticSimilarityLengthMatched', 'degeneration', 'perplexity'];
const BASELINES: readonly SystemName[] = ['base', 'base-grounded', 'retrieval'];

const metricLabel = (metric: string) =>
  metric === 'validationLoss' ? 'validation loss' : (METRIC_ROWS.find((r) => r.metric === metric)?.label ?? metric);
const digitsOf = (metric: string) => METRIC_ROWS.find((r) => r.metric === metric)?.digits ?? 3;
const mb = (bytes: number | null | undefined, digits = 1) => (typeof bytes === 'number' ? round(bytes / 2 ** 20, digits) : null);

function trialState(t: SweepTrial): string {
  if (t.status === 'stopped') return `stopped at step ${t.stoppedAtStep}`;
  if (t.status === 'failed') return `failed: ${t.error ?? 'unknown error'}`;
  return t.status;
}

function outcomeBlocks(m: SweepManifest): Block[] {
  const blocks: Block[] = [];
  const winner = m.winner === null ? undefined : m.trials[m.winner - 1];
  if (!winner) {
    blocks.push({ kind: 'paragraph', text: '**No winner**: no trial finished with a value of the metric.' });
    return blocks;
  }
  blocks.push({
    kind: 'paragraph',
    text: `**Best: trial ${winner.trial}** (\`${winner.label}\`), ${metricLabel(m.metric)} ${round(winner.metric, 4)}.`,
  });
  if (m.gate) blocks.push({ kind: 'paragraph', text: `Its exported model, evaluated and gated like a run's: ${verdictSentence(m.gate)}` });
  return blocks;
}

function trialTable(m: SweepManifest): Block {
  const header = [
    'trial',
    'point',
    'state',
    'steps',
    ...m.rungs.map((step) => `loss at ${step}`),
    'validation loss',
    metricLabel(m.metric),
    'train s',
    'tokens/s',
    'peak memory MiB',
    'trainable parameters',
    'model MiB',
  ];
  return {
    kind: 'table',
    header,
    numeric: header.map((_, n) => n === 0 || n > 2),
    rows: m.trials.map((t) => [
      `${t.trial}${t.best ? ' (best)' : ''}`,
      t.label,
      trialState(t),
      t.steps,
      ...m.rungs.map((step) => round(t.rungs.find((r) => r.step === step)?.validationLoss, 4)),
      round(t.validationLoss, 4),
      round(t.metric, 4),
      round(t.trainSeconds, 1),
      round(t.tokensPerSecond, 1),
      mb(t.peakMemoryBytes, 0),
      t.trainableParameters,
      mb(t.model?.bytes),
    ]),
  };
}

/** One row per tuned system of each evaluated trial, then the baselines every trial was compared with. */
function evaluationTable(m: SweepManifest): Block | null {
  const evaluated = m.trials.filter((t) => t.evaluation);
  if (evaluated.length === 0) return null;
  const metrics = COMPARED.filter((metric) => evaluated.some((t) => SYSTEMS.some((s) => typeof t.evaluation?.[s]?.[metric] === 'number')));
  const row = (name: string, values: MetricTable[SystemName]): Cell[] => [
    name,
    ...metrics.map((metric) => round(values?.[metric], digitsOf(metric))),
  ];
  const rows: Cell[][] = evaluated.flatMap((t) =>
    SYSTEMS.filter((s) => t.evaluation?.[s]).map((s) => row(`trial ${t.trial} ${t.label}, ${SYSTEM_LABEL[s]}`, t.evaluation![s])),
  );
  for (const s of BASELINES) if (m.metrics?.[s]) rows.push(row(SYSTEM_LABEL[s], m.metrics[s]));
  return { kind: 'table', header: ['system', ...metrics.map(metricLabel)], numeric: [false, ...metrics.map(() => true)], rows };
}

const svg = (alt: string, file: string, text: string): Block => ({
  kind: 'image',
  alt,
  file,
  mime: 'image/svg+xml',
  data: new TextEncoder().encode(text),
});

/** The metric against LoRA rank, one line per learning rate and alpha rule; full fine-tuning as reference lines. */
function rankChart(m: SweepManifest): Block | null {
  const finished = m.trials.filter((t) => t.status === 'finished' && t.metric !== null);
  const lora = finished.filter((t) => t.point.strategy !== 'full' && t.point.lora?.rank);
  const ranks = [...new Set(lora.map((t) => t.point.lora!.rank!))].sort((a, b) => a - b);
  if (ranks.length === 0) return null;
  const lines = new Map<string, LineSeries>();
  for (const t of lora) {
    const { rank, alpha } = t.point.lora!;
    const name = `LoRA lr ${t.point.learningRate}, alpha ${Number((alpha! / rank!).toFixed(2))} x rank`;
    if (!lines.has(name)) lines.set(name, { name, points: [] });
    lines.get(name)!.points.push({ x: rank!, y: t.metric! });
  }
  const references = finished
    .filter((t) => t.point.strategy === 'full')
    .map((t) => ({ y: t.metric!, label: `full fine-tuning lr ${t.point.learningRate}` }));
  const title = `${metricLabel(m.metric)} by LoRA rank`;
  const chart = lineChartSvg({
    title,
    xLabel: 'LoRA rank',
    yLabel: metricLabel(m.metric),
    series: [...lines.values()],
    xTicks: ranks,
    logX: true,
    references,
  });
  return svg(title, 'metric-by-rank.svg', chart);
}

/** Every trial's validation loss over the steps; a trial that halving stopped is dashed; the rungs are marked. */
function curveChart(data: SweepReportData): Block | null {
  const { manifest: m } = data;
  const series: LineSeries[] = m.trials.flatMap((t) => {
    const points = (data.curves.get(t.trial) ?? []).map((p) => ({ x: p.step, y: p.validationLoss }));
    return points.length > 0 ? [{ name: `${t.trial}: ${t.label}`, points, dashed: t.status === 'stopped' }] : [];
  });
  if (series.length === 0) return null;
  const total = m.totalSteps ?? Math.max(...series.flatMap((s) => s.points.map((p) => p.x)));
  const xTicks =
    m.rungs.length > 0 ? [0, ...m.rungs, total] : [...new Set([0, 0.25, 0.5, 0.75, 1].map((share) => Math.round(share * total)))];
  const verticals = m.rungs.map((step, n) => ({ x: step, label: `rung ${n + 1}` }));
  const title = 'Validation loss by step';
  return svg(
    title,
    'validation-loss.svg',
    lineChartSvg({ title, xLabel: 'optimizer step', yLabel: 'validation loss', series, xTicks, verticals }),
  );
}

function gridItems(m: SweepManifest): string[] {
  const items = [
    `${m.trials.length} trials, each with a budget of ${m.totalSteps ?? '?'} optimizer steps; the winner is picked by ${metricLabel(m.metric)}.`,
  ];
  if (m.rungs.length > 0) {
    const stopped = m.trials.filter((t) => t.status === 'stopped').length;
    items.push(
      `Successive halving compared the trials by validation loss at steps ${m.rungs.join(', ')} and stopped ${stopped}: ` +
        `${m.trialSteps} trial steps trained, against ${m.gridSteps} for the whole grid (${round(m.trialSteps / Math.max(1, m.gridSteps), 2)}).`,
    );
  } else items.push(`Every trial ran its whole budget (no successive halving): ${m.trialSteps} trial steps.`);
  items.push(
    'Training time counts optimizer steps only (not loading or checkpoints); peak memory is the most the training process used ' +
      '(CPU: resident set size, CUDA: what torch allocated); the model size is the trained artifact (LoRA: the adapter).',
  );
  return items;
}

export function sweepReportBlocks(data: SweepReportData): Block[] {
  const m = data.manifest;
  const blocks: Block[] = [
    { kind: 'heading', level: 1, text: `Sweep report: ${m.pipeline}` },
    { kind: 'paragraph', text: `Sweep \`${m.sweepId}\`, ${m.status}${m.error ? `: ${m.error}` : ''}; written ${m.updatedAt}.` },
    ...outcomeBlocks(m),
    { kind: 'heading', level: 2, text: 'Trials' },
    { kind: 'list', items: gridItems(m) },
    trialTable(m),
  ];
  const evaluation = evaluationTable(m);
  if (evaluation) {
    blocks.push(
      { kind: 'heading', level: 2, text: 'Evaluation of each trial' },
      {
        kind: 'paragraph',
        text:
          'Every tuned model answered the same test rows as the baselines below; perplexity is on general English ' +
          '(forgetting: lower is better, the base model is the reference).',
      },
      evaluation,
    );
  }
  const charts = [rankChart(m), curveChart(data)].filter((b): b is Block => b !== null);
  if (charts.length > 0) blocks.push({ kind: 'heading', level: 2, text: 'Plots' }, ...charts);
  return blocks;
}

/** The report's inputs: the manifest, and the training history in each trial's model folder. */
export async function readSweepReportData(store: StepStore, manifest: SweepManifest): Promise<SweepReportData> {
  const curves: SweepReportData['curves'] = new Map();
  for (const t of manifest.trials) {
    if (!t.model) continue;
    const file = join(await store.fetch(t.model), 'history.json');
    if (!existsSync(file)) continue;
    const history = await parseJsonFile(file, TrainingHistory);
    // A rung's evaluation is recorded again when the next leg starts from it: keep one point per step.
    const byStep = new Map(history.evals.map((e) => [e.step, e.validationLoss]));
    curves.set(
      t.trial,
      [...byStep].map(([step, validationLoss]) => ({ step, validationLoss })),
    );
  }
  return { manifest, curves };
}
