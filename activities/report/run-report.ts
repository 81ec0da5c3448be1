/**
 * The run report: one folder per run with `report.md` (images beside it) and a self-contained
 * `report.html`. It holds the gate's verdict, the metric table (tuned model against its baselines,
 * on the same test rows), a per-category breakdown, the forgetting check, the training curve, the
 * data report and sample answers side by side with the references.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SYSTEMS, type ArtifactRef, type GateVerdict, type StepResult, type SystemName } from '../../schemas/manifests';
import { artifactPath, readJsonl } from '../artifacts';
import { dataReportBlocks, type DataReport } from '../data/report';
import { storeFor } from '../data-stage';
import {
  drawEvaluationRows,
  type EvaluateInput,
  type EvaluationRow,
  type ForgettingStats,
  type GenerationStats,
  type Prediction,
} from '../evaluate';
import { runCachedStep } from '../steps';
import { groupedBarChartSvg } from './charts';
import { nested, renderHtml, renderMarkdown, type Block, type Cell } from './document';

export const SAMPLE_ANSWERS = 20;
const SYSTEM_LABEL: Record<SystemName, string> = {
  tuned: 'tuned',
  base: 'base (untuned)',
  retrieval: 'retrieval',
};
/** Rows of the metric table: name in the score report, label, digits. */
const METRIC_ROWS: Array<[string, string, number]> = [
  ['rougeL', 'ROUGE-L F1', 3],
  ['rouge1', 'ROUGE-1 F1', 3],
  ['rouge2', 'ROUGE-2 F1', 3],
  ['bleu', 'BLEU (0-100)', 2],
  ['chrf', 'chrF (0-100)', 2],
  ['factualAccuracy', 'factual accuracy', 3],
  ['predictionWordsMean', 'answer words, mean', 1],
  ['predictionWordsP90', 'answer words, p90', 1],
];

interface SystemScores {
  rows: number;
  metrics: Record<string, number | null>;
  byCategory: Record<string, { rows: number; metrics: Record<string, number | null> }>;
}

export interface ScoreReport {
  systems: Partial<Record<SystemName, SystemScores>>;
  normalisation: string;
  libraries: Record<string, string>;
}

/** Everything the report shows, already read from the artifacts. */
export interface EvaluationReportData {
  pipeline: string;
  runId: string;
  verdict: GateVerdict;
  scores: ScoreReport;
  /** Every system's answers, keyed by system then row id. */
  answers: Partial<Record<SystemName, Map<string, Prediction>>>;
  rows: EvaluationRow[];
  testRows: number;
  seed: number;
  settings: { maxNewTokens: number; retrievalIndexRows: number | null; baseSkipped: string | null };
  generation: GenerationStats[];
  forgetting: ForgettingStats | null;
  training: { steps: number; resumedFromStep: number | null; trainableParameters: number; metrics: Record<string, number | null> };
  exportMetrics: Record<string, number | null>;
  trainingCurve: Uint8Array | null;
  dataReport: DataReport;
}

/** A measured value as a table cell with a fixed number of decimals (so 0 reads 0.000 beside 0.412). */
const round = (value: number | null | undefined, digits: number): Cell =>
  value === null || value === undefined ? null : value.toFixed(digits);

function verdictBlocks(data: EvaluationReportData): Block[] {
  const { verdict } = data;
  const pending = verdict.results.filter((r) => r.status === 'pending');
  const blocks: Block[] = [
    {
      kind: 'paragraph',
      text: verdict.passed
        ? `**Promotion candidate**: the tuned model passed ${verdict.results.length === 0 ? 'every gate (none are configured)' : 'every gate'}.`
        : `**Not promoted**: ${verdict.reasons.join('; ')}.`,
    },
  ];
  if (pending.length > 0)
    blocks.push({ kind: 'paragraph', text: `Decided after human review: ${pending.map((r) => `\`${r.rule}\``).join(', ')}.` });
  if (verdict.results.length > 0)
    blocks.push({
      kind: 'table',
      header: ['gate', 'tuned', 'threshold', 'result'],
      numeric: [false, true, true, false],
      rows: verdict.results.map((r) => [`\`${r.rule}\``, round(r.value, 4), round(r.threshold, 4), r.status]),
    });
  return blocks;
}

function metricBlocks(data: EvaluationReportData, systems: SystemName[]): Block[] {
  const value = (system: SystemName, metric: string, digits: number) => round(data.scores.systems[system]?.metrics[metric], digits);
  const rows: Cell[][] = METRIC_ROWS.map(([metric, label, digits]) => [label, ...systems.map((s) => value(s, metric, digits))]);
  if (data.forgetting) {
    const { base, tuned } = data.forgetting;
    rows.push([
      'perplexity, general English',
      ...systems.map((s) => (s === 'tuned' ? round(tuned.perplexity, 2) : s === 'base' ? round(base.perplexity, 2) : null)),
    ]);
  }
  const factRows = data.scores.systems.tuned?.metrics.factRows ?? null;
  const chart = groupedBarChartSvg({
    title: 'Tuned model against its baselines (same test rows)',
    groups: ['ROUGE-L', 'factual accuracy', 'chrF / 100', 'BLEU / 100'],
    max: 1,
    series: systems.map((s) => {
      const m = data.scores.systems[s]?.metrics ?? {};
      const scaled = (v: number | null | undefined, by = 1) => (v === null || v === undefined ? null : v / by);
      return {
        name: SYSTEM_LABEL[s],
        values: [scaled(m.rougeL), scaled(m.factualAccuracy), scaled(m.chrf, 100), scaled(m.bleu, 100)],
      };
    }),
  });
  return [
    { kind: 'heading', level: 2, text: 'Metrics' },
    {
      kind: 'paragraph',
      text:
        `${data.rows.length} test rows (${data.rows.length < data.testRows ? `a seeded draw from ${data.testRows}` : 'all of them'}), ` +
        `answered by every system; ${factRows ?? 0} of them carry a fact. Higher is better, except perplexity.`,
    },
    {
      kind: 'table',
      header: ['metric', ...systems.map((s) => SYSTEM_LABEL[s])],
      numeric: [false, ...systems.map(() => true)],
      rows,
    },
    { kind: 'image', alt: 'Metric comparison', file: 'metrics.svg', mime: 'image/svg+xml', data: Buffer.from(chart) },
  ];
}

function categoryBlocks(data: EvaluationReportData, systems: SystemName[]): Block[] {
  const categories = Object.keys(data.scores.systems.tuned?.byCategory ?? {}).sort();
  if (categories.length <= 1) return [];
  const cell = (s: SystemName, category: string, metric: string) => round(data.scores.systems[s]?.byCategory[category]?.metrics[metric], 3);
  return [
    { kind: 'heading', level: 2, text: 'By category' },
    {
      kind: 'table',
      header: ['category', 'rows', ...systems.map((s) => `ROUGE-L ${s}`), ...systems.map((s) => `facts ${s}`)],
      numeric: [false, true, ...systems.map(() => true), ...systems.map(() => true)],
      rows: categories.map((category) => [
        category,
        data.scores.systems.tuned!.byCategory[category]!.rows,
        ...systems.map((s) => cell(s, category, 'rougeL')),
        ...systems.map((s) => cell(s, category, 'factualAccuracy')),
      ]),
    },
  ];
}

function forgettingBlocks(data: EvaluationReportData): Block[] {
  const f = data.forgetting;
  if (!f) return [];
  const change = f.ratio === null ? 'unknown' : `${((f.ratio - 1) * 100).toFixed(1)}%`;
  return [
    { kind: 'heading', level: 2, text: 'Forgetting check' },
    {
      kind: 'paragraph',
      text:
        `Perplexity on general English (\`${f.text}\`, sha256 \`${f.textSha256.slice(0, 12)}\`, ${f.tuned.tokens ?? '?'} tokens): ` +
        `base ${round(f.base.perplexity, 2)}, tuned ${round(f.tuned.perplexity, 2)} (${change}). A large rise means the tuned model lost general language.`,
    },
  ];
}

function trainingBlocks(data: EvaluationReportData): Block[] {
  const m = data.training.metrics;
  const e = data.exportMetrics;
  const blocks: Block[] = [
    { kind: 'heading', level: 2, text: 'Training' },
    {
      kind: 'table',
      header: ['steps', 'train rows', 'validation loss before', 'after', 'best step', 'tokens/s', 'trainable parameters'],
      numeric: [true, true, true, true, true, true, true],
      rows: [
        [
          data.training.steps,
          round(m.trainRows, 0),
          round(m.initialValidationLoss, 3),
          round(m.finalValidationLoss, 3),
          round(m.bestStep, 0),
          round(m.tokensPerSecond, 1),
          data.training.trainableParameters,
        ],
      ],
    },
  ];
  if (data.training.resumedFromStep !== null)
    blocks.push({ kind: 'paragraph', text: `Resumed from the checkpoint of step ${data.training.resumedFromStep}.` });
  if (data.trainingCurve)
    blocks.push({ kind: 'image', alt: 'Training curve', file: 'training-curve.png', mime: 'image/png', data: data.trainingCurve });
  blocks.push({
    kind: 'paragraph',
    text:
      `Export: ONNX with a KV cache, ${round((e.onnxBytes ?? 0) / 1e6, 0)} MB; ${e.parityTokens ?? '?'} greedy tokens over ` +
      `${e.parityPrompts ?? '?'} prompts identical in PyTorch and ONNX Runtime. The answers above come from this export, generated in Node.`,
  });
  return blocks;
}

function sampleBlocks(data: EvaluationReportData, systems: SystemName[]): Block[] {
  const samples = drawEvaluationRows(data.rows, SAMPLE_ANSWERS, data.seed + 1);
  const answer = (s: SystemName, id: string) => data.answers[s]?.get(id)?.prediction ?? null;
  return [
    { kind: 'heading', level: 2, text: `Sample answers (${samples.length})` },
    {
      kind: 'table',
      header: ['question', 'reference', ...systems.map((s) => SYSTEM_LABEL[s])],
      rows: samples.map((row) => [row.question, row.reference, ...systems.map((s) => answer(s, row.id))]),
    },
  ];
}

function settingsBlocks(data: EvaluationReportData): Block[] {
  const items = [
    `Decoding: greedy, at most ${data.settings.maxNewTokens} new tokens, stopping at the end of the turn.`,
    ...data.generation.map(
      (g) =>
        `${SYSTEM_LABEL[g.system]}: ${g.newTokens} tokens generated at ${g.tokensPerSecond} tokens/s; ${g.truncated} answers hit the token limit.`,
    ),
  ];
  if (data.settings.retrievalIndexRows !== null)
    items.push(
      `Retrieval: the answer of the most similar of the ${data.settings.retrievalIndexRows} training rows the model was trained on.`,
    );
  if (data.settings.baseSkipped) items.push(`Base model baseline skipped: ${data.settings.baseSkipped}`);
  items.push(
    `Scoring: ${Object.entries(data.scores.libraries)
      .map(([name, version]) => `${name} ${version}`)
      .join(', ')}. ${data.scores.normalisation}`,
  );
  return [
    { kind: 'heading', level: 2, text: 'How this was measured' },
    { kind: 'list', items },
  ];
}

export function evaluationReportBlocks(data: EvaluationReportData): Block[] {
  const systems = SYSTEMS.filter((s) => data.scores.systems[s]);
  return [
    { kind: 'heading', level: 1, text: `Run report: ${data.pipeline}` },
    { kind: 'paragraph', text: `Run \`${data.runId}\`.` },
    ...verdictBlocks(data),
    ...metricBlocks(data, systems),
    ...categoryBlocks(data, systems),
    ...forgettingBlocks(data),
    ...trainingBlocks(data),
    ...sampleBlocks(data, systems),
    ...nested(dataReportBlocks(data.dataReport), 1),
    ...settingsBlocks(data),
  ];
}

/** Writes `report.md`, `report.html` and the images into `folder`. */
export async function writeReportFolder(folder: string, title: string, blocks: Block[]): Promise<void> {
  await mkdir(folder, { recursive: true });
  for (const block of blocks) if (block.kind === 'image') await writeFile(join(folder, block.file), block.data);
  await writeFile(join(folder, 'report.md'), renderMarkdown(blocks));
  await writeFile(join(folder, 'report.html'), renderHtml(title, blocks));
}

export interface ReportInput extends EvaluateInput {
  runId: string;
  verdict: GateVerdict;
  questions: StepResult<{ rows: number; testRows: number }>;
  answers: StepResult<object>[];
  generation: GenerationStats[];
  scores: ArtifactRef;
  forgetting: ForgettingStats | null;
  baseSkipped: string | null;
  retrievalIndexRows: number | null;
  training: {
    model: ArtifactRef;
    steps: number;
    resumedFromStep: number | null;
    trainableParameters: number;
    metrics: Record<string, number | null>;
  };
  exportMetrics: Record<string, number | null>;
  dataReport: ArtifactRef;
}

/** The report activity (cpu task queue): reads the artifacts, writes the folder, stores it. */
export async function writeRunReport(input: ReportInput): Promise<StepResult<object>> {
  const store = storeFor(input);
  const inputs = [
    input.questions.outputs.questions!,
    input.scores,
    input.dataReport,
    input.training.model,
    ...input.answers.map((a) => a.outputs.answers!),
  ];
  const { config, configDir: _configDir, noCache, ...shown } = input;
  return runCachedStep(store, { step: 'run-report', config: shown, inputs, noCache }, async (key) => {
    const answers: EvaluationReportData['answers'] = {};
    for (const step of input.answers) {
      for (const p of await readJsonl<Prediction>(step.outputs.answers!)) (answers[p.system] ??= new Map()).set(p.id, p);
    }
    const curve = join(artifactPath(input.training.model), 'training_curve.png');
    const data: EvaluationReportData = {
      pipeline: config.name,
      runId: input.runId,
      verdict: input.verdict,
      scores: JSON.parse(await readFile(artifactPath(input.scores), 'utf8')) as ScoreReport,
      answers,
      rows: await readJsonl<EvaluationRow>(input.questions.outputs.questions!),
      testRows: input.questions.stats.testRows,
      seed: config.split.seed,
      settings: {
        maxNewTokens: config.evaluation.maxNewTokens,
        retrievalIndexRows: input.retrievalIndexRows,
        baseSkipped: input.baseSkipped,
      },
      generation: input.generation,
      forgetting: input.forgetting,
      training: input.training,
      exportMetrics: input.exportMetrics,
      trainingCurve: existsSync(curve) ? await readFile(curve) : null,
      dataReport: JSON.parse(await readFile(artifactPath(input.dataReport), 'utf8')) as DataReport,
    };
    const folder = join(store.workDir(key), 'report');
    await writeReportFolder(folder, `Run report: ${config.name}`, evaluationReportBlocks(data));
    const report = await store.putDir(folder);
    await rm(store.workDir(key), { recursive: true, force: true });
    return { outputs: { report }, stats: { passed: input.verdict.passed } };
  });
}
