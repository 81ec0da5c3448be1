/**
 * The run manifest (cpu task queue): `run.json`, what a run read, made and decided, with hashes:
 * the config as given and resolved, the code and base model versions, the data snapshot, every
 * step's inputs and outputs (reused or computed, attempts), the metrics and the gate's verdict, and
 * who started the run from where. It is stored content-addressed and linked, with the run's other
 * files, into the run folder. The report, `tuneline status` and the audit read it.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StorageSection, type PipelineConfig } from '../schemas/config';
import {
  RunManifest,
  type ArtifactRef,
  type GateVerdict,
  type MetricTable,
  type PipelineInput,
  type ReviewState,
  type RunOutcome,
  type StepRecord,
  type StepResult,
  type SweepInput,
} from '../schemas/manifests';
import { TrainStats } from '../schemas/steps';
import { allSourcesVersion } from './code-version';
import { storeFor } from './context';

const projectRoot = resolve(import.meta.dirname, '..');

export interface RecordRunInput {
  runId: string;
  /** The workflow's input: the config as given, who started it. */
  run: PipelineInput;
  /** The validated config; null when validation failed. */
  config: PipelineConfig | null;
  status: RunManifest['status'];
  outcome: RunOutcome | null;
  error: string | null;
  /** ISO times from the workflow's clock. */
  startedAt: string;
  updatedAt: string;
  steps: Array<{ stage: StepRecord['stage']; result: StepResult }>;
  /** The data stage's source: the snapshot in the store, or the file hashed in place. */
  source: ArtifactRef | null;
  metrics: MetricTable | null;
  gate: GateVerdict | null;
  /** Human review of sampled answers, when the run had one. */
  review?: ReviewState | null;
  notes: string[];
  /** The run folder's named files (`train.arrow`, `model`, `report`, ...); `run.json` is added. */
  artifacts: Record<string, ArtifactRef>;
}

let commit: string | null | undefined;

/** This worker's git commit, `+dirty` with local changes; null outside a git checkout. */
function gitCommit(): string | null {
  if (commit !== undefined) return commit;
  const head = spawnSync('git', ['-C', projectRoot, 'rev-parse', 'HEAD'], { encoding: 'utf8' });
  if (head.status !== 0) return (commit = null);
  const dirty = spawnSync('git', ['-C', projectRoot, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' });
  return (commit = `${head.stdout.trim()}${dirty.stdout.trim() ? '+dirty' : ''}`);
}

const packageVersion = (): string => (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version;

/**
 * The parts a run's and a sweep's manifest share: the config as given and resolved, the code that
 * ran, the data snapshot and the step records.
 */
export function manifestSections(
  run: PipelineInput | SweepInput,
  config: PipelineConfig | null,
  source: ArtifactRef | null,
  steps: Array<{ stage: StepRecord['stage']; result: StepResult }>,
): Pick<RunManifest, 'config' | 'code' | 'data' | 'steps'> {
  const data = config?.data;
  return {
    config: { file: run.configFile ?? null, hash: run.configHash, given: run.config, resolved: config },
    code: { version: packageVersion(), commit: gitCommit(), sources: allSourcesVersion() },
    data:
      data && source
        ? { path: data.path ? resolve(run.configDir, data.path) : null, snapshot: data.path ? data.snapshot : true, source }
        : null,
    steps: steps.map(({ stage, result }) => ({
      stage,
      step: result.step,
      key: result.key,
      codeVersion: result.codeVersion,
      reused: result.reused,
      attempt: result.attempt,
      seconds: result.seconds,
      summary: result.summary,
      inputs: result.inputs,
      outputs: result.outputs,
      stats: result.stats,
    })),
  };
}

export function buildRunManifest(input: RecordRunInput): RunManifest {
  const { config, run } = input;
  const train = input.steps.find((s) => s.result.step === 'train');
  return RunManifest.parse({
    manifestVersion: 1,
    runId: input.runId,
    pipeline: config?.name ?? 'invalid-config',
    status: input.status,
    outcome: input.outcome,
    error: input.error,
    startedAt: input.startedAt,
    updatedAt: input.updatedAt,
    startedBy: run.startedBy ?? null,
    ...manifestSections(run, config, input.source, input.steps),
    baseModel: train ? TrainStats.parse(train.result.stats).baseModel : null,
    metrics: input.metrics,
    gate: input.gate,
    review: input.review ?? null,
    notes: input.notes,
    artifacts: input.artifacts,
  });
}

/** Writes `run.json` into the store and links it, with the run's files, into the run folder. */
/** How the code that recorded a manifest is named in search attributes: its commit, else its version and sources hash. */
export const codeVersionOf = (code: RunManifest['code']): string => code.commit ?? `${code.version}+${code.sources.slice(0, 12)}`;

export async function recordRun(input: RecordRunInput): Promise<{ manifest: ArtifactRef; runFolder: string; codeVersion: string }> {
  const manifest = buildRunManifest(input);
  // An invalid config has no storage section: its run is recorded where the defaults put it.
  const config = input.config ?? { storage: StorageSection.parse({}) };
  const context = { config: config as PipelineConfig, configDir: input.run.configDir };
  const store = storeFor(context);
  const ref = await store.put(JSON.stringify(manifest, null, 2) + '\n', '.json', null);
  const runFolder = await store.publishRun(input.runId, { ...input.artifacts, 'run.json': ref });
  return { manifest: ref, runFolder, codeVersion: codeVersionOf(manifest.code) };
}
