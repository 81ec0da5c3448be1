/**
 * The small records that travel through workflow histories: references to artifacts (never the
 * data itself), step results, workflow input and progress.
 */
import { z } from 'zod';
import type { Gate } from './config';

/** A file in the content-addressed artifact store. */
export const ArtifactRef = z.object({
  uri: z.string().describe('`file://` URI of the stored file.'),
  sha256: z.string().length(64),
  bytes: z.number().int(),
  rows: z.number().int().nullable().describe('Rows in the file, for tables and JSON-lines files.'),
});
export type ArtifactRef = z.infer<typeof ArtifactRef>;

/** What every cached step returns: its outputs, its statistics and whether it was reused. */
export interface StepResult<Stats = object> {
  step: string;
  /** Cache key: hash of the step, its config, its inputs' hashes and the code version. */
  key: string;
  reused: boolean;
  outputs: Record<string, ArtifactRef>;
  stats: Stats;
  seconds: number;
}

/** The training activity's heartbeat: where it is, and where it can resume from. */
export interface TrainProgress {
  step: number;
  totalSteps: number | null;
  /** The newest checkpoint written, and the step it holds (older than `step` while training goes on). */
  checkpoint: string | null;
  checkpointStep: number | null;
  loss: number | null;
  tokensPerSecond: number | null;
  validationLoss: number | null;
  attempt: number;
}

/** Input of the `finetunePipeline` workflow. */
export interface PipelineInput {
  /** The parsed YAML as written; the first activity validates it, so a client cannot skip checks. */
  config: unknown;
  /** Folder of the YAML file; relative paths in the config are resolved against it. */
  configDir: string;
  /** Hash of the YAML text, recorded for lineage. */
  configHash: string;
  /** Re-run every step even when its output is cached. */
  noCache?: boolean;
  /** Heartbeat timeout of the data activities, e.g. `30s`; tests use a few seconds. */
  dataHeartbeatTimeout?: string;
  /** End the run after this stage (default: run every stage); `train` includes the export. */
  stopAfter?: 'data' | 'train';
}

export type StageName =
  'validate' | 'source' | 'ingest' | 'clean' | 'dedup' | 'split' | 'report' | 'train' | 'export' | 'evaluate' | 'gate' | 'done' | 'failed';

/** Systems scored on the evaluation rows: the tuned model and its baselines. */
export type SystemName = 'tuned' | 'base' | 'retrieval';
/** The systems in the order tables show them. */
export const SYSTEMS: readonly SystemName[] = ['tuned', 'base', 'retrieval'];

/** Metric values per system, e.g. `table.tuned.rougeL`; null where a metric does not apply. */
export type MetricTable = Partial<Record<SystemName, Record<string, number | null>>>;

export interface GateResult {
  gate: Gate;
  /** The gate in words, e.g. `rougeL >= retrieval (0.3412)`. */
  rule: string;
  value: number | null;
  /** The resolved threshold of a relative gate; null for absolute gates. */
  threshold: number | null;
  /** `pending`: decided later (satisfaction, by human review). */
  status: 'passed' | 'failed' | 'pending';
  /** Why it failed, e.g. `rougeL >= retrieval (0.3412): tuned 0.2981`. */
  reason?: string;
}

export interface GateVerdict {
  passed: boolean;
  results: GateResult[];
  reasons: string[];
}

export interface StepProgress {
  step: string;
  status: 'pending' | 'running' | 'done' | 'reused' | 'failed';
  seconds?: number;
  summary?: string;
}

/** Returned by the `progress` query. */
export interface PipelineProgress {
  stage: StageName;
  steps: StepProgress[];
  error?: string;
}

/** Returned by the workflow when it completes. */
export interface PipelineResult {
  pipeline: string;
  /**
   * How far the run went: `data-ready` (stopped after the data stage), `exported` (stopped after
   * training and export), `candidate` (passed every gate) or `not-promoted` (failed a gate; see `evaluation.gate`).
   */
  status: 'data-ready' | 'exported' | 'candidate' | 'not-promoted';
  configHash: string;
  steps: Array<Pick<StepResult, 'step' | 'key' | 'reused' | 'seconds'>>;
  splits: Record<'train' | 'validation' | 'test', ArtifactRef>;
  report: { json: ArtifactRef; markdown: ArtifactRef };
  quarantine: ArtifactRef;
  conflicts: ArtifactRef;
  /** Folder with named links to this run's artifacts. */
  runFolder: string;
  /** The trained model artifact and its training metrics (absent when the run stopped after the data stage). */
  training?: {
    model: ArtifactRef;
    events: ArtifactRef;
    steps: number;
    resumedFromStep: number | null;
    device: string;
    trainableParameters: number;
    metrics: Record<string, number | null>;
  };
  /** The exported ONNX folder (parity-checked against PyTorch): what is evaluated and served. */
  onnx?: ArtifactRef;
  /** Scores of the tuned model and its baselines on the same test rows, the gate's verdict and the report. */
  evaluation?: {
    rows: number;
    metrics: MetricTable;
    gate: GateVerdict;
    /** Folder with `report.md` (images beside it) and the self-contained `report.html`. */
    report: ArtifactRef;
  };
}
