/**
 * The records that travel through workflow histories and the run manifest: references to artifacts
 * (never the data itself), step results, stage inputs and outputs, progress, and `run.json`.
 */
import { z } from 'zod';
import { Gate, type PipelineConfig, type TrainingSection } from './config';
import { SystemName, type TrainMetrics } from './engine';

/** A file or folder in the content-addressed artifact store (or a source file hashed in place). */
export const ArtifactRef = z.strictObject({
  uri: z.string().describe('`file://` URI of the stored file or folder.'),
  sha256: z.string().length(64).describe('Of the bytes; of the sorted (path, file hash) list for a folder.'),
  bytes: z.number().int().min(0),
  rows: z.number().int().nullable().describe('Rows in the file, for tables and JSON-lines files.'),
});
export type ArtifactRef = z.infer<typeof ArtifactRef>;

/** What every activity of a run is given: the validated config, where its relative paths start, and whether to bypass the cache. */
export interface StepContext {
  config: PipelineConfig;
  /** Folder of the YAML file; relative paths in the config are resolved against it. */
  configDir: string;
  /** Re-run the step even when its output is cached. */
  noCache?: boolean;
  /**
   * With a bucket for artifacts: the files the config names (data, feedback and knowledge files, a
   * local base model), by the path as written, as the client stored them before the run started,
   * so workers on other machines read the same bytes.
   */
  staged?: Record<string, ArtifactRef>;
}

/** What every cached step returns. `Outputs` names its artifacts, so a caller never guesses at keys. */
export interface StepResult<Stats = unknown, Outputs extends string = string> {
  step: string;
  /** Cache key: hash of the step, its config, its inputs' hashes and its code version. */
  key: string;
  /** Hash of the code this step runs: its module and what that imports, the engine command where it uses one. */
  codeVersion: string;
  reused: boolean;
  /** The activity attempt that produced this result in this run (1: the first try). */
  attempt: number;
  inputs: ArtifactRef[];
  outputs: Record<Outputs, ArtifactRef>;
  stats: Stats;
  /** One line for progress displays, written by the activity that knows its stats. */
  summary: string;
  seconds: number;
}

/** The training activity's heartbeat: where it is, and where it can resume from. */
export interface TrainProgress {
  step: number;
  totalSteps: number | null;
  /** Where this attempt pauses (a rung), when it does not run the whole budget. */
  stopAtStep: number | null;
  /** The newest checkpoint written, and the step it holds (older than `step` while training goes on). */
  checkpoint: string | null;
  checkpointStep: number | null;
  loss: number | null;
  tokensPerSecond: number | null;
  validationLoss: number | null;
  attempt: number;
  /** With the artifacts in a bucket: the newest checkpoint copied there, for a retry on another machine. */
  mirrored: MirroredCheckpoint | null;
}

/** A training checkpoint copied to the bucket (activities/checkpoint-mirror.ts): the folder and the step it holds. */
export const MirroredCheckpoint = z.strictObject({ ref: ArtifactRef, step: z.number().int().nonnegative() });
export type MirroredCheckpoint = z.infer<typeof MirroredCheckpoint>;

/** The generation heartbeat: how far one system has got through the evaluation rows. */
export interface GenerationProgress {
  system: SystemName;
  rows: number;
  answered: number;
  newTokens: number;
  seconds: number;
}

/** Training settings a trial may change from the pipeline file's; a sweep's grid points are these. */
export interface TrainingOverrides {
  strategy?: TrainingSection['strategy'];
  lora?: Partial<Pick<TrainingSection['lora'], 'rank' | 'alpha' | 'dropout'>>;
  learningRate?: number;
  maxSteps?: number;
  /** Pause at this step of the budget (a successive-halving rung); the checkpoints stay, so the trial can continue. */
  stopAtStep?: number;
}

/** Metric values per system, e.g. `table.tuned.rougeL`; null where a metric does not apply. */
export const MetricTable = z.partialRecord(SystemName, z.record(z.string(), z.number().nullable()));
export type MetricTable = z.infer<typeof MetricTable>;

export const GateResult = z.strictObject({
  gate: Gate,
  rule: z.string().describe('The gate in words, e.g. `rougeL >= retrieval (0.3412)`.'),
  value: z.number().nullable(),
  threshold: z.number().nullable().describe('The resolved threshold of a relative gate; null for absolute gates.'),
  status: z.enum(['passed', 'failed', 'pending']).describe('`pending`: decided by human review (satisfaction).'),
  reason: z.string().optional().describe('Why it failed, e.g. `rougeL >= retrieval (0.3412): tuned 0.2981`.'),
});
export type GateResult = z.infer<typeof GateResult>;

/**
 * `candidate`: every gate passed. `awaiting-review`: none failed, but a satisfaction gate waits for
 * human review, so the model is not a candidate yet. `not-promoted`: a gate failed (see `reasons`).
 */
export const Verdict = z.enum(['candidate', 'awaiting-review', 'not-promoted']);
export type Verdict = z.infer<typeof Verdict>;

export const GateVerdict = z.strictObject({
  verdict: Verdict,
  system: SystemName.describe('The system the gates judge: the one that would be served (tuned, grounded when training was).'),
  results: z.array(GateResult),
  reasons: z.array(z.string()),
});
export type GateVerdict = z.infer<typeof GateVerdict>;

export type StageName =
  | 'queued'
  | 'validate'
  | 'data'
  | 'source'
  | 'ingest'
  | 'clean'
  | 'dedup'
  | 'split'
  | 'feedback'
  | 'knowledge'
  | 'report'
  | 'trial'
  | 'ground'
  | 'train'
  | 'export'
  | 'evaluate'
  | 'gate'
  | 'review'
  | 'promote'
  | 'manifest'
  | 'done'
  | 'failed';

export interface StepProgress {
  step: string;
  status: 'pending' | 'running' | 'done' | 'reused' | 'failed';
  seconds?: number;
  summary?: string;
}

/** A stage workflow started by this one, for clients that follow a run into its children. */
export interface ChildProgress {
  workflowId: string;
  kind: 'data' | 'trial';
  status: 'running' | 'completed' | 'failed';
}

/** Returned by every workflow's `progress` query: its own steps and the children it started. */
export interface WorkflowProgress {
  stage: StageName;
  steps: StepProgress[];
  children: ChildProgress[];
  error?: string;
}

/** Who started a run, and from where: recorded in the run manifest. */
export const StartedBy = z.strictObject({
  user: z.string(),
  host: z.string(),
  cwd: z.string(),
  command: z.string().describe('`tuneline run`, or the script that called the client library.'),
});
export type StartedBy = z.infer<typeof StartedBy>;

export type SplitName = 'train' | 'validation' | 'test';

/** Input of the `dataStage` workflow. */
export interface DataStageInput {
  context: StepContext;
  /** The run this stage belongs to; its run folder gets the data files. */
  runId: string;
}

/** What the data stage made: the source it read, the splits and the data report. */
export interface DataStageResult {
  source: ArtifactRef;
  /** With data.feedback, `train` is the data's training rows and the feedback rows after them. */
  splits: Record<SplitName, ArtifactRef>;
  dataReport: { json: ArtifactRef; markdown: ArtifactRef };
  quarantine: ArtifactRef;
  conflicts: ArtifactRef;
  removedByCleaning: ArtifactRef;
  removedDuplicates: ArtifactRef;
  /** The knowledge files' rows for the retriever, and what was set aside from them; null without retrieval.knowledge. */
  knowledge: { rows: ArtifactRef; quarantine: ArtifactRef; removed: ArtifactRef } | null;
  /** What was set aside from the feedback files (their rows are in `splits.train`); null without data.feedback. */
  feedback: { quarantine: ArtifactRef; removed: ArtifactRef } | null;
  steps: StepResult[];
  progress: StepProgress[];
}

/** Input of the `trial` workflow: split artifacts and the training settings to try. */
export interface TrialInput {
  context: StepContext;
  runId: string;
  splits: Record<SplitName, ArtifactRef>;
  /** The knowledge files' rows, searched by the retriever beside the training split. */
  knowledge?: ArtifactRef;
  overrides: TrainingOverrides;
  /** End after this step: `export` skips evaluation and the gate; `train` (a sweep's rung) the export too. */
  stopAfter?: 'train' | 'export';
}

/** A trained model and its training numbers. */
export interface TrainingSummary {
  model: ArtifactRef;
  events: ArtifactRef;
  steps: number;
  resumedFromStep: number | null;
  device: string;
  trainableParameters: number;
  metrics: TrainMetrics;
}

/** Scores of the tuned model and its baselines on the same rows, and the gate's verdict. */
export interface EvaluationSummary {
  rows: number;
  metrics: MetricTable;
  gate: GateVerdict;
  files: Record<string, ArtifactRef>;
}

/** What a trial made and decided. */
export interface TrialResult {
  /** The training settings the trial used, after its overrides. */
  training: TrainingSection;
  trained: TrainingSummary;
  /** Null when the trial stopped after training. */
  onnx: ArtifactRef | null;
  evaluation: EvaluationSummary | null;
  /** What a reader of the numbers must know (a skipped baseline and why). */
  notes: string[];
  steps: StepResult[];
  progress: StepProgress[];
}

/** Input of the `finetunePipeline` workflow. */
export interface PipelineInput {
  /** The parsed YAML as written; the first activity validates it, so a client cannot skip checks. */
  config: unknown;
  /** Folder of the YAML file; relative paths in the config are resolved against it. */
  configDir: string;
  /** The YAML file, for the run manifest; absent when a script built the config in memory. */
  configFile?: string;
  /** Hash of the YAML text, recorded for lineage. */
  configHash: string;
  noCache?: boolean;
  /** Heartbeat timeout of the cpu activities, e.g. `30s`; tests use a few seconds. */
  dataHeartbeatTimeout?: string;
  /** End the run after this stage (default: run every stage); `train` includes the export. */
  stopAfter?: 'data' | 'train';
  startedBy?: StartedBy;
  /** End as `unchanged` after the data stage when the data and config are the production model's (schedules set it). */
  onlyIfChanged?: boolean;
  /** The schedule that started the run, if one did. */
  schedule?: string;
  /** With a bucket for artifacts: the config's local files as the client stored them (`StepContext.staged`). */
  staged?: Record<string, ArtifactRef>;
}

/**
 * How a run ended: `promoted` (every gate passed; it is the production model now), `candidate` (every
 * gate passed, promotion is manual), `unchanged` (a scheduled run found the production model's data
 * and config and trained nothing), `review-expired` (reviewers did not rate every sampled answer in
 * `review.timeout`).
 */
export const RunOutcome = z.enum([
  'data-ready',
  'exported',
  'candidate',
  'promoted',
  'awaiting-review',
  'not-promoted',
  'review-expired',
  'unchanged',
]);
export type RunOutcome = z.infer<typeof RunOutcome>;

/** Returned by `finetunePipeline` when it completes. */
export interface PipelineResult {
  pipeline: string;
  outcome: RunOutcome;
  configHash: string;
  /** Folder with named links to this run's artifacts, `run.json` among them. */
  runFolder: string;
  /** `run.json`: what the run read, made and decided. */
  manifest: ArtifactRef;
  data: Omit<DataStageResult, 'steps' | 'progress'>;
  training: TrainingSummary | null;
  onnx: ArtifactRef | null;
  evaluation: (EvaluationSummary & { report: ArtifactRef }) | null;
  steps: Array<Pick<StepResult, 'step' | 'key' | 'reused' | 'seconds'>>;
}

/** The base model as it was when the run read it. */
export const BaseModelIdentity = z.strictObject({
  name: z.string().describe('`model.base` as written: `default`, a folder or a hub id.'),
  kind: z.enum(['gguf', 'folder', 'hub']),
  path: z.string().nullable(),
  sha256: z.string().nullable().describe('Of the GGUF file or of the folder tree; null for a hub id (its revision is not pinned).'),
  revision: z.string(),
});
export type BaseModelIdentity = z.infer<typeof BaseModelIdentity>;

/** One step of a run, as the manifest records it. */
export const StepRecord = z.strictObject({
  stage: z.enum(['pipeline', 'data', 'trial']),
  step: z.string(),
  key: z.string(),
  codeVersion: z.string(),
  reused: z.boolean(),
  attempt: z.number().int().positive(),
  seconds: z.number(),
  summary: z.string(),
  inputs: z.array(ArtifactRef),
  outputs: z.record(z.string(), ArtifactRef),
  stats: z.unknown(),
});
export type StepRecord = z.infer<typeof StepRecord>;

/** `run.json`: what a run read, made and decided, with hashes. The report and `tuneline status` read it. */
/** One answer reviewers rate: a test question, the served system's answer, the reference answer. */
export const ReviewItem = z.strictObject({ id: z.string(), question: z.string(), answer: z.string(), reference: z.string() });
export type ReviewItem = z.infer<typeof ReviewItem>;

/** A reviewer's verdict on one item, as the `review` Update carries it. */
export const ReviewVote = z.strictObject({
  itemId: z.string().min(1),
  reviewer: z.string().min(1),
  verdict: z.enum(['accept', 'reject', 'correct']).describe('`correct`: not acceptable, and here is the right answer.'),
  correction: z.string().min(1).optional(),
  comment: z.string().optional(),
});
export type ReviewVote = z.infer<typeof ReviewVote>;

/** Where a review stands, and how it ended: the `reviewStatus` query, and `review` in run.json. */
export const ReviewState = z.strictObject({
  status: z.enum(['open', 'passed', 'failed', 'expired']),
  target: z.number().describe('review.satisfactionTarget'),
  deadline: z.string().describe('When the review expires (ISO time).'),
  items: z.array(ReviewItem),
  votes: z.array(ReviewVote.extend({ at: z.string() })),
  rated: z.number().int().describe('Items with at least one vote.'),
  satisfaction: z.number().nullable().describe('Accepted votes / all votes; null before any vote.'),
  interval: z.tuple([z.number(), z.number()]).nullable().describe('Wilson 95% interval of the satisfaction.'),
});
export type ReviewState = z.infer<typeof ReviewState>;

export const RunManifest = z
  .strictObject({
    manifestVersion: z.literal(1),
    runId: z.string(),
    pipeline: z.string(),
    status: z
      .enum(['running', 'completed', 'failed'])
      .describe('`running`: written mid-run, after a stage; the last write says how it ended.'),
    outcome: RunOutcome.nullable().describe('Null while running and when the run failed.'),
    error: z.string().nullable(),
    startedAt: z.string(),
    updatedAt: z.string().describe('When this manifest was written (the end, for a run that ended).'),
    startedBy: StartedBy.nullable(),
    config: z.strictObject({
      file: z.string().nullable(),
      hash: z.string().describe('Of the YAML text.'),
      given: z.unknown().describe('The YAML as parsed, before defaults.'),
      resolved: z.unknown().nullable().describe('With every default applied; null when the config was invalid.'),
    }),
    code: z.strictObject({
      version: z.string().describe("The project's package version."),
      commit: z.string().nullable().describe('The git commit of the worker that wrote this manifest, `+dirty` when it had local changes.'),
      sources: z.string().describe('Hash of every TypeScript and Python source file of that worker.'),
    }),
    baseModel: BaseModelIdentity.nullable(),
    data: z
      .strictObject({
        path: z.string().nullable().describe('The data file as configured; null for the generated sample set.'),
        snapshot: z.boolean().describe('True when `source` is a copy in the artifact store, false when it is the file in place.'),
        source: ArtifactRef,
      })
      .nullable(),
    steps: z.array(StepRecord),
    metrics: MetricTable.nullable(),
    gate: GateVerdict.nullable(),
    review: ReviewState.nullable()
      .optional()
      .describe('Human review of sampled answers: every vote, with its reviewer; absent before review existed.'),
    notes: z.array(z.string()).describe('What a reader of the numbers must know, e.g. a baseline that was skipped and why.'),
    artifacts: z.record(z.string(), ArtifactRef).describe('The named files of the run folder.'),
  })
  .describe('What a run read, made and decided (`run.json`).');
export type RunManifest = z.infer<typeof RunManifest>;

/** One trial of a sweep: its grid point, where it got to and why it ended. */
export interface SweepTrial {
  /** 1-based, in grid order; the child workflows are `<sweep>/trial-<n>/…`. */
  trial: number;
  point: TrainingOverrides;
  /** The point in words, e.g. `lora r8 a16 lr 0.001`. */
  label: string;
  status: 'pending' | 'running' | 'paused' | 'stopped' | 'finished' | 'failed';
  /** Optimizer steps trained so far. */
  steps: number;
  /** Validation loss at each rung it reached. */
  rungs: Array<{ step: number; validationLoss: number }>;
  /** Validation loss of its model at the end (the best weights seen); null until it finishes. */
  validationLoss: number | null;
  /** The sweep's metric (sweep.metric) of the finished trial; null until then. */
  metric: number | null;
  /** Seconds in optimizer steps, over every rung. */
  trainSeconds: number;
  tokensPerSecond: number | null;
  trainableParameters: number | null;
  /** The most memory any of its legs used (see TrainMetrics.peakMemoryBytes); null before it trained. */
  peakMemoryBytes: number | null;
  /** The model its last leg trained (the best weights so far): its `history.json` holds the whole curve, its size is the artifact's. */
  model: ArtifactRef | null;
  /** The tuned systems' rows of its evaluation (tuned, tuned-grounded); null unless every trial is evaluated (an evaluation metric). */
  evaluation: MetricTable | null;
  /** Set when successive halving stopped it: the rung's step. */
  stoppedAtStep?: number;
  error?: string;
  best?: boolean;
}

/** What a sweep carries across continue-as-new: everything it decided so far. */
export interface SweepState {
  data: Pick<DataStageResult, 'splits' | 'knowledge'>;
  /** The training budget in optimizer steps, and the rungs inside it. */
  totalSteps: number;
  rungs: number[];
  /** The next rung to run (rungs.length: the final one, to the end of the budget). */
  stage: number;
  trials: SweepTrial[];
  /** `sweep.json` as written after the data stage; later records carry its data section over. */
  manifest?: ArtifactRef;
  /** Stage progress lines of the data stage, kept for the progress query. */
  dataSteps: StepProgress[];
}

/** Input of the `sweep` workflow: a run's, without a stop point. */
export interface SweepInput extends Omit<PipelineInput, 'stopAfter'> {
  /** Continue as new at the next rung once the history has this many events (default 10,000; tests set a few). */
  continueAsNewAfterEvents?: number;
  /** Set by the sweep itself when it continues as new. */
  state?: SweepState;
}

/** What `tuneline sweep status` and `results` show: the trials as they stand. */
export interface SweepProgress {
  stage: 'validate' | 'data' | 'trials' | 'winner' | 'done' | 'failed';
  metric: string | null;
  totalSteps: number | null;
  rungs: number[];
  trials: SweepTrial[];
  winner: number | null;
  error?: string;
}

/** Returned by the `sweep` workflow. */
export interface SweepResult {
  pipeline: string;
  metric: string;
  totalSteps: number;
  rungs: number[];
  trials: SweepTrial[];
  /** The best trial by sweep.metric; null when every trial failed. */
  winner: number | null;
  /** The winner's evaluation and gate verdict, as a single run's. */
  outcome: RunOutcome | 'no-winner';
  evaluation: EvaluationSummary | null;
  /** Trial steps trained in all, and what the whole grid without halving would have trained. */
  trialSteps: number;
  gridSteps: number;
  /** `<storage.runs>/<sweep id>/`: `sweep.json`, the report, the data files and the winner's; null for sweeps started before sweeps were recorded. */
  sweepFolder: string | null;
  manifest: ArtifactRef | null;
  report: ArtifactRef | null;
}

/** What a sweep read, ran and decided (`sweep.json` in its folder); written after the data stage and at the end. */
export interface SweepManifest {
  manifestVersion: 1;
  kind: 'sweep';
  sweepId: string;
  pipeline: string;
  status: RunManifest['status'];
  error: string | null;
  startedAt: string;
  updatedAt: string;
  startedBy: StartedBy | null;
  config: RunManifest['config'];
  code: RunManifest['code'];
  data: RunManifest['data'];
  /** The data stage's steps, as a run records them. */
  steps: StepRecord[];
  metric: string;
  totalSteps: number | null;
  rungs: number[];
  trials: SweepTrial[];
  winner: number | null;
  /** The winner's full evaluation (every system, baselines included) and gate verdict. */
  metrics: MetricTable | null;
  gate: GateVerdict | null;
  trialSteps: number;
  gridSteps: number;
  /** The named files of the sweep folder. */
  artifacts: Record<string, ArtifactRef>;
}
