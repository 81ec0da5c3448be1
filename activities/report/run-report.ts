/**
 * The run report: one folder per run with `report.md` (images beside it) and a self-contained
 * `report.html`. It holds the gate's verdict, the metric table (tuned model against its baselines,
 * on the same test rows), a per-category breakdown, the forgetting check, the training curve, the
 * data report and sample answers side by side with the references. Everything in it is read from
 * the run manifest (`run.json`) and the artifacts it names.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DecodingSection } from '../../schemas/config';
import { ContextRow, EvaluationRow, Prediction, SYSTEMS, ScoreReport, type KnownPair, type SystemName } from '../../schemas/engine';
import {
  RunManifest,
  type ArtifactRef,
  type GateVerdict,
  type MetricTable,
  type StepContext,
  type StepResult,
  type ReviewState,
} from '../../schemas/manifests';
import { EvalSetStats, ExportStats, ForgettingStats, GenerationStats, RetrievalStats, TrainStats } from '../../schemas/steps';
import { readJsonArtifact, readJsonl, type StepStore } from '../artifacts';
import { codeVersion } from '../code-version';
import { storeFor } from '../context';
import { DataReport, dataReportBlocks } from '../data/report';
import { drawEvaluationRows } from '../evaluation/eval-set';
import { runCachedStep } from '../steps';
import { reviewSummary } from '../../workflows/review';
import { groupedBarChartSvg } from './charts';
import { nested, renderHtml, renderMarkdown, type Block } from './document';
import { SYSTEM_LABEL, fixedCell as round, metricTableBlock } from './metric-table';

export const SAMPLE_ANSWERS = 20;

/** Everything the report shows, already read from the manifest and its artifacts. */
export interface RunReportData {
  pipeline: string;
  runId: string;
  verdict: GateVerdict;
  /** Human review of sampled answers, when the run had one. */
  review: ReviewState | null;
  /** Every system's metrics, the forgetting check's perplexities included. */
  metrics: MetricTable;
  scores: ScoreReport;
  /** Every system's answers, keyed by system then row id. */
  answers: Partial<Record<SystemName, Map<string, Prediction>>>;
  rows: EvaluationRow[];
  /** The known pairs of each evaluation row (grounded systems); empty without grounding. */
  knownPairs: Map<string, KnownPair[]>;
  testRows: number;
  seed: number;
  maxNewTokens: number;
  decoding: DecodingSection;
  retrieval: { method: 'embedding' | 'lexical'; scope: 'product-first' | 'all'; k: number } | null;
  retrievalIndexRows: number | null;
  notes: string[];
  generation: GenerationStats[];
  forgetting: ForgettingStats | null;
  training: TrainStats;
  exportMetrics: ExportStats['metrics'];
  trainingCurve: Uint8Array | null;
  dataReport: DataReport;
}

/** The verdict in one sentence, as the report and the command line say it. */
export function verdictSentence(verdict: GateVerdict): string {
  const pending = verdict.results.filter((r) => r.status === 'pending').map((r) => `\`${r.rule}\``);
  if (verdict.verdict === 'candidate')
    return `**Promotion candidate**: the tuned model passed ${verdict.results.length === 0 ? 'every gate (none are configured)' : 'every gate'}.`;
  if (verdict.verdict === 'awaiting-review')
    return `**Awaiting review**: every measured gate passed; ${pending.join(', ')} is decided by human review, so the model is not a promotion candidate yet.`;
  return `**Not promoted**: ${verdict.reasons.join('; ')}.`;
}

function verdictBlocks(data: RunReportData): Block[] {
  const { verdict } = data;
  const blocks: Block[] = [{ kind: 'paragraph', text: verdictSentence(verdict) }];
  if (data.review)
    blocks.push({
      kind: 'paragraph',
      text: `**Human review** ${reviewSummary(data.review)}; reviewers: ${[...new Set(data.review.votes.map((v) => v.reviewer))].join(', ') || 'none'}.`,
    });
  if (verdict.results.length > 0)
    blocks.push({
      kind: 'table',
      header: ['gate', 'tuned', 'threshold', 'result'],
      numeric: [false, true, true, false],
      rows: verdict.results.map((r) => [`\`${r.rule}\``, round(r.value, 4), round(r.threshold, 4), r.status]),
    });
  return blocks;
}

const BASELINES: readonly SystemName[] = ['base', 'base-grounded', 'retrieval'];
/**
 * What the plain comparison weighs: wording (ROUGE-L) and meaning (semantic similarity), as answered
 * and with every baseline's answers cut to the served answer's length (so brevity alone cannot win).
 */
const COMPARED: ReadonlyArray<[string, string]> = [
  ['rougeL', 'ROUGE-L'],
  ['semanticSimilarity', 'semantic similarity'],
  ['rougeLLengthMatched', 'ROUGE-L at equal length'],
  ['semanticSimilarityLengthMatched', 'semantic similarity at equal length'],
];

/**
 * Whether training beat every baseline, in words: the served system against each baseline on
 * ROUGE-L and semantic similarity, and the answer lengths beside them, so a win by brevity shows.
 */
export function comparisonSentence(metrics: MetricTable, served: SystemName): string {
  const ours = metrics[served];
  if (!ours) return '';
  const losses: string[] = [];
  const measured: string[] = [];
  for (const baseline of BASELINES) {
    const theirs = metrics[baseline];
    if (!theirs) continue;
    measured.push(SYSTEM_LABEL[baseline]);
    for (const [metric, label] of COMPARED) {
      const a = ours[metric];
      const b = theirs[metric];
      if (typeof a === 'number' && typeof b === 'number' && a <= b)
        losses.push(`${SYSTEM_LABEL[baseline]} on ${label} (${b.toFixed(3)} against ${a.toFixed(3)})`);
    }
  }
  if (measured.length === 0) return '';
  const words = (s: SystemName) => metrics[s]?.predictionWordsMean;
  const echo = ours.questionEchoSimilarity;
  const length =
    (typeof words(served) === 'number' ? ` Its answers average ${words(served)!.toFixed(1)} words.` : '') +
    (typeof echo === 'number' ? ` The question itself, given as the answer, would score ${echo.toFixed(3)} on semantic similarity.` : '');
  const atEqualLength = typeof ours.rougeLLengthMatched === 'number' ? ", also with their answers cut to its answers' length" : '';
  return losses.length === 0
    ? `**Training paid off**: ${SYSTEM_LABEL[served]} beats ${measured.join(', ')} on ROUGE-L and semantic similarity${atEqualLength}.${length}`
    : `**Training did not beat every baseline**: ${SYSTEM_LABEL[served]} does not beat ${losses.join('; ')}.${length}`;
}

function metricBlocks(data: RunReportData, systems: SystemName[]): Block[] {
  const facts = data.scores.systems[data.verdict.system]?.metrics.factRows ?? 0;
  const references = data.scores.systems[data.verdict.system]?.metrics.referenceWordsMean;
  const groups: Array<[string, string, number]> = [
    ['ROUGE-L', 'rougeL', 1],
    ['semantic similarity', 'semanticSimilarity', 1],
    ...(facts > 0 ? [['factual accuracy', 'factualAccuracy', 1] as [string, string, number]] : []),
    ['chrF / 100', 'chrf', 100],
  ];
  const chart = groupedBarChartSvg({
    title: 'Tuned model against its baselines (same test rows)',
    groups: groups.map(([label]) => label),
    max: 1,
    series: systems.map((s) => ({
      name: SYSTEM_LABEL[s],
      values: groups.map(([, metric, by]) => {
        const value = data.metrics[s]?.[metric];
        return typeof value === 'number' ? Math.max(0, value / by) : null;
      }),
    })),
  });
  const comparison = comparisonSentence(data.metrics, data.verdict.system);
  return [
    { kind: 'heading', level: 2, text: 'Metrics' },
    {
      kind: 'paragraph',
      text:
        `${data.rows.length} test rows (${data.rows.length < data.testRows ? `a seeded draw from ${data.testRows}` : 'all of them'}), ` +
        `answered by every system; ${facts} of them carry a fact` +
        (typeof references === 'number' ? `; the reference answers average ${references.toFixed(1)} words` : '') +
        '. Higher is better, except perplexity and answers in a loop.',
    },
    ...(comparison ? [{ kind: 'paragraph' as const, text: comparison }] : []),
    metricTableBlock(data.metrics),
    { kind: 'image', alt: 'Metric comparison', file: 'metrics.svg', mime: 'image/svg+xml', data: Buffer.from(chart) },
  ];
}

function categoryBlocks(data: RunReportData, systems: SystemName[]): Block[] {
  const categories = Object.keys(data.scores.systems.tuned?.byCategory ?? {}).sort();
  if (categories.length <= 1) return [];
  const cell = (s: SystemName, category: string, metric: 'rougeL' | 'factualAccuracy') =>
    round(data.scores.systems[s]?.byCategory[category]?.metrics[metric], 3);
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

function forgettingBlocks(data: RunReportData): Block[] {
  const f = data.forgetting;
  if (!f) return [];
  const change = `${((f.ratio - 1) * 100).toFixed(1)}%`;
  return [
    { kind: 'heading', level: 2, text: 'Forgetting check' },
    {
      kind: 'paragraph',
      text:
        `Perplexity on general English (\`${f.text}\`, sha256 \`${f.textSha256.slice(0, 12)}\`, ${f.tuned.tokens} tokens): ` +
        `base ${round(f.base.perplexity, 2)}, tuned ${round(f.tuned.perplexity, 2)} (${change}). A large rise means the tuned model lost general language.`,
    },
  ];
}

function trainingBlocks(data: RunReportData): Block[] {
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
  if (m.pausedAtStep !== null)
    blocks.push({
      kind: 'paragraph',
      text: `Paused at step ${m.pausedAtStep} of a ${m.totalSteps}-step budget; its checkpoints are kept to continue.`,
    });
  if (data.training.resumedFromStep !== null)
    blocks.push({ kind: 'paragraph', text: `Resumed from the checkpoint of step ${data.training.resumedFromStep}.` });
  if (data.trainingCurve)
    blocks.push({ kind: 'image', alt: 'Training curve', file: 'training-curve.png', mime: 'image/png', data: data.trainingCurve });
  const parity = `${e.parityTokens} greedy tokens over ${e.parityPrompts} prompts identical in PyTorch and ONNX Runtime`;
  const precision = `int${e.weightBits}`;
  blocks.push({
    kind: 'paragraph',
    text:
      e.weightBits === 32
        ? `Export: ONNX with a KV cache, float32 weights, ${round(e.onnxBytes / 1e6, 0)} MB; ${parity}. ` +
          'The answers above come from this export, generated in Node.'
        : `Export: ONNX with a KV cache, ${precision} weights (quantized by ONNX Runtime from the float32 export, ` +
          `whose ${parity}), ${round(e.onnxBytes / 1e6, 0)} MB; it reproduces ${round(e.tokenAgreement! * 100, 1)}% of ` +
          `float32's greedy tokens, and its perplexity on the validation answers is ${round(Math.abs(e.perplexityIncrease!) * 100, 2)}% ` +
          `${e.perplexityIncrease! < 0 ? 'lower' : 'higher'}. The answers above (the base model's too, exported the same way) ` +
          `come from the ${precision} export, generated in Node: the precision evaluated is the one served.`,
  });
  return blocks;
}

function sampleBlocks(data: RunReportData, systems: SystemName[]): Block[] {
  const samples = drawEvaluationRows(data.rows, SAMPLE_ANSWERS, data.seed + 1);
  const answer = (s: SystemName, id: string) => data.answers[s]?.get(id)?.prediction ?? null;
  // The questions of the known pairs a grounded prompt carried, with their similarity.
  const pairs = (id: string) =>
    (data.knownPairs.get(id) ?? []).map((p, n) => `${n + 1}. ${p.question} (${p.similarity.toFixed(2)})`).join(' ') || null;
  const grounded = data.knownPairs.size > 0;
  return [
    { kind: 'heading', level: 2, text: `Sample answers (${samples.length})` },
    {
      kind: 'table',
      header: [
        'question',
        'reference',
        ...(grounded ? ['known pairs given (grounded systems)'] : []),
        ...systems.map((s) => SYSTEM_LABEL[s]),
      ],
      rows: samples.map((row) => [
        row.question,
        row.reference,
        ...(grounded ? [pairs(row.id)] : []),
        ...systems.map((s) => answer(s, row.id)),
      ]),
    },
  ];
}

function settingsBlocks(data: RunReportData): Block[] {
  const d = data.decoding;
  const items = [
    `Decoding: greedy, at most ${data.maxNewTokens} new tokens, ` +
      (d.endProbability === null
        ? 'ending where the end of the turn is the likeliest token; '
        : `ending when the end of the turn has at least ${d.endProbability} probability; `) +
      `repetition penalty ` +
      `${d.repetitionPenalty}, no repeated ${d.noRepeatNgramSize}-grams (${d.noRepeatNgramSize === 0 ? 'off' : 'in the answer'}), ` +
      `${d.stopOnRepetition ? 'stopping when an answer repeats a sentence of itself' : 'no stop on repeated sentences'}.`,
    ...data.generation.map(
      (g) =>
        `${SYSTEM_LABEL[g.system]}: ${g.newTokens} tokens generated at ${g.tokensPerSecond} tokens/s; ${g.truncated} answers hit the token limit.`,
    ),
  ];
  if (data.retrieval) {
    const how = data.retrieval.method === 'embedding' ? 'all-MiniLM-L6-v2 question embeddings (cosine)' : 'character 3-gram Jaccard';
    items.push(
      `Retrieval: ${how} over the ${data.retrievalIndexRows ?? 'training'} rows of the training split; the retrieval baseline ` +
        `answers with the most similar row's answer` +
        (data.retrieval.scope === 'product-first' ? ' (rows about the same product first, when the data names products)' : '') +
        (data.retrieval.k > 0 ? `, and grounded prompts carry the ${data.retrieval.k} most similar rows.` : '.'),
    );
  }
  items.push(...data.notes);
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

export function runReportBlocks(data: RunReportData): Block[] {
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

/** Reads a run manifest's step results back, each checked against the schema of its stats. */
function stepsOf(manifest: RunManifest) {
  const find = (step: string) => manifest.steps.find((s) => s.step === step);
  const need = (step: string) => {
    const found = find(step);
    if (!found) throw new Error(`run ${manifest.runId}: the manifest has no ${step} step, so there is nothing to report`);
    return found;
  };
  return { find, need };
}

/** Everything the report shows, read from the manifest and the artifacts it names. */
export async function readRunReportData(store: StepStore, manifest: RunManifest, config: StepContext['config']): Promise<RunReportData> {
  const { find, need } = stepsOf(manifest);
  const answers: RunReportData['answers'] = {};
  const answerSteps = manifest.steps.filter((s) => s.step.startsWith('answers-'));
  for (const step of answerSteps) {
    for (const p of await readJsonl(store, step.outputs.answers!, Prediction)) (answers[p.system] ??= new Map()).set(p.id, p);
  }
  const train = need('train');
  const curve = join(await store.fetch(train.outputs.model!), 'training_curve.png');
  const forgetting = find('forgetting');
  const retrieval = find('answers-retrieval');
  const evalSet = need('eval-set');
  const grounding = find('ground-evaluation');
  const knownPairs = new Map(
    (grounding ? await readJsonl(store, grounding.outputs.contexts!, ContextRow) : []).map((row) => [row.id, row.context]),
  );
  if (!manifest.gate || !manifest.metrics) throw new Error(`run ${manifest.runId}: the manifest has no metrics or gate verdict yet`);
  return {
    pipeline: manifest.pipeline,
    runId: manifest.runId,
    verdict: manifest.gate,
    review: manifest.review ?? null,
    metrics: manifest.metrics,
    scores: await readJsonArtifact(store, need('score').outputs.scores!, ScoreReport),
    answers,
    rows: await readJsonl(store, evalSet.outputs.questions!, EvaluationRow),
    knownPairs,
    testRows: EvalSetStats.parse(evalSet.stats).testRows,
    seed: config.split.seed,
    maxNewTokens: config.evaluation.maxNewTokens,
    decoding: config.decoding,
    retrieval:
      retrieval || grounding
        ? { method: config.retrieval.method, scope: config.retrieval.scope, k: grounding ? config.training.grounding.k : 0 }
        : null,
    retrievalIndexRows: retrieval ? RetrievalStats.parse(retrieval.stats).indexRows : null,
    notes: manifest.notes,
    generation: SYSTEMS.flatMap((s) => {
      const step = find(`answers-${s}`);
      return step && s !== 'retrieval' ? [GenerationStats.parse(step.stats)] : [];
    }),
    forgetting: forgetting ? ForgettingStats.parse(forgetting.stats) : null,
    training: TrainStats.parse(train.stats),
    exportMetrics: ExportStats.parse(need('export').stats).metrics,
    trainingCurve: existsSync(curve) ? await readFile(curve) : null,
    dataReport: await readJsonArtifact(store, need('report').outputs.json!, DataReport),
  };
}

/** The report activity (cpu task queue): reads the run manifest and its artifacts, writes the folder, stores it. */
export async function writeRunReport(input: StepContext & { manifest: ArtifactRef }): Promise<StepResult<{ verdict: string }, 'report'>> {
  const store = storeFor(input);
  return runCachedStep(
    store,
    {
      step: 'run-report',
      config: {},
      inputs: [input.manifest],
      code: codeVersion(import.meta.url),
      noCache: input.noCache,
      summarize: () => 'report.md and report.html',
    },
    async (key) => {
      const manifest = await readJsonArtifact(store, input.manifest, RunManifest);
      const data = await readRunReportData(store, manifest, input.config);
      const folder = join(store.workDir(key), 'report');
      await writeReportFolder(folder, `Run report: ${manifest.pipeline}`, runReportBlocks(data));
      const report = await store.putDir(folder);
      await rm(store.workDir(key), { recursive: true, force: true });
      return { outputs: { report }, stats: { verdict: data.verdict.verdict } };
    },
  );
}
