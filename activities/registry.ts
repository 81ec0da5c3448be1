/**
 * The model registry: per pipeline, a `production` pointer to one run's model and the append-only
 * log of every move of it (who, when, why, forced or not). It is a pointer over run manifests, not a
 * second truth: what a model is, how it scored and what its gates said stay in its run's `run.json`.
 * Files under `storage.registry`: `<pipeline>/production.json` (the last move) and `<pipeline>/log.jsonl`.
 * The pipeline promotes through `promoteModel` (cpu queue); `tuneline models` moves it by hand.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
  fsyncSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { currentUser } from '../lib/who';
import { canonicalJson, sha256Hex } from './artifacts';
import { ArtifactRef, RunManifest, Verdict, type StepContext } from '../schemas/manifests';
import type { PipelineConfig } from '../schemas/config';

export const RegistryEvent = z.strictObject({
  action: z.enum(['promote', 'rollback']),
  pipeline: z.string(),
  runId: z.string().describe('The run whose model is production from now on.'),
  model: ArtifactRef.describe('Its ONNX export, the files the chat server loads.'),
  dataset: z
    .string()
    .describe(
      "sha256 of the data the run read (run.json's data.source); with feedback or knowledge files, of it and their hashes (`dataFingerprint`).",
    ),
  configHash: z.string().describe('Of the pipeline file text, as the run manifest has it.'),
  modelConfig: z.string().describe('Of the resolved config without `schedules` and `promotion`: what decides the model.'),
  verdict: Verdict.nullable().describe('What its gates said; a promotion against them is `forced`.'),
  forced: z.boolean(),
  reason: z.string(),
  previous: z.string().nullable().describe('The run that was production before, if any.'),
  by: z.string().describe('`user@host`, or `pipeline <run id>` for an automatic promotion.'),
  at: z.string().describe('ISO time.'),
});
export type RegistryEvent = z.infer<typeof RegistryEvent>;

/** `<storage.registry>/<pipeline>/`. */
export const registryFolder = (config: Pick<PipelineConfig, 'name' | 'storage'>, configDir: string): string =>
  resolve(configDir, config.storage.registry, config.name);

const productionFile = (folder: string) => join(folder, 'production.json');
const logFile = (folder: string) => join(folder, 'log.jsonl');

/** The pipeline's production model now (the move that put it there); null before the first promotion. */
export function readProduction(folder: string): RegistryEvent | null {
  const path = productionFile(folder);
  return existsSync(path) ? RegistryEvent.parse(JSON.parse(readFileSync(path, 'utf8'))) : null;
}

/** Every move of the pointer, oldest first. */
export function readRegistryLog(folder: string): RegistryEvent[] {
  const path = logFile(folder);
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => RegistryEvent.parse(JSON.parse(line)));
}

/** One mover at a time: an exclusive lock file, taken over when its holder left it more than a minute ago. */
async function withLock<T>(folder: string, body: () => T): Promise<T> {
  mkdirSync(folder, { recursive: true });
  const lock = join(folder, '.lock');
  for (let tries = 0; ; tries++) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A lock gone since the failed open is taken on the next try; one left by a holder that died is taken over.
      const since = Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (since > 60_000 || tries > 300) rmSync(lock, { force: true });
      else await sleep(100);
    }
  }
  try {
    return body();
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Appends the move to the log (synced), then points `production.json` at it (written whole, then renamed). */
export function movePointer(folder: string, event: Omit<RegistryEvent, 'previous' | 'at'>): Promise<RegistryEvent> {
  return withLock(folder, () => {
    const recorded = RegistryEvent.parse({ ...event, previous: readProduction(folder)?.runId ?? null, at: new Date().toISOString() });
    const fd = openSync(logFile(folder), 'a');
    try {
      writeSync(fd, JSON.stringify(recorded) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const tmp = `${productionFile(folder)}.tmp`;
    writeFileSync(tmp, JSON.stringify(recorded, null, 2) + '\n');
    renameSync(tmp, productionFile(folder));
    return recorded;
  });
}

/** `user@host` of this process. */
export const whoAmI = (): string => `${currentUser()}@${hostname()}`;

/** Why this run's model cannot be promoted without `--force`, or null when its gates passed. */
export function promotionRefusal(manifest: RunManifest): string | null {
  if (!manifest.artifacts.onnx)
    return `run ${manifest.runId} has no exported model to serve (outcome ${manifest.outcome ?? manifest.status})`;
  if (manifest.status !== 'completed') return `run ${manifest.runId} is ${manifest.status}, not completed`;
  const verdict = manifest.gate?.verdict ?? null;
  if (verdict !== 'candidate')
    return `run ${manifest.runId}'s gates did not pass (${verdict ?? 'not evaluated'}${manifest.gate?.reasons.length ? `: ${manifest.gate.reasons.join('; ')}` : ''})`;
  return null;
}

/** What decides a model, hashed: the resolved config without the keys that only say when and whether to promote. */
export function modelConfigHash(resolved: unknown): string {
  const { schedules: _s, promotion: _p, ...rest } = (resolved ?? {}) as Record<string, unknown>;
  return sha256Hex(canonicalJson(rest));
}

/** The steps whose inputs are files hashed where they lie (data.feedback, retrieval.knowledge); each names them in `stats.files`. */
const FILE_STEPS = ['feedback', 'knowledge'];
const FileStepStats = z.object({ files: z.array(z.object({ sha256: z.string().optional() })) });

/** The data stage's steps that read files beside the data, as the pipeline passes them to `checkUnchanged` and `promoteModel`. */
export type DataFileSteps = Array<{ step: string; stats: unknown }>;

/**
 * What a model was made from, for "nothing new" checks: the data source's sha256, or, when the run
 * also read feedback or knowledge files, a hash of it and of each file's sha256 in order, so new
 * feedback is new data. A file recorded without its hash (a run from before hashes were kept in its
 * step's stats) counts as different from any file.
 */
export function dataFingerprint(source: string, steps: DataFileSteps): string {
  const files = steps
    .filter((s) => FILE_STEPS.includes(s.step))
    .flatMap((s) => FileStepStats.parse(s.stats).files.map((file) => ({ step: s.step, sha256: file.sha256 ?? null })));
  return files.length === 0 ? source : sha256Hex(canonicalJson({ source, files }));
}

/** The move that makes this run's model production; its data and config hashes are kept for "nothing new" checks. */
export function promotionOf(manifest: RunManifest, fields: Pick<RegistryEvent, 'action' | 'forced' | 'reason' | 'by'>) {
  if (!manifest.artifacts.onnx || !manifest.data) throw new Error(promotionRefusal(manifest) ?? `run ${manifest.runId} has no data record`);
  return {
    ...fields,
    pipeline: manifest.pipeline,
    runId: manifest.runId,
    model: manifest.artifacts.onnx,
    dataset: dataFingerprint(manifest.data.source.sha256, manifest.steps),
    configHash: manifest.config.hash,
    modelConfig: modelConfigHash(manifest.config.resolved),
    verdict: manifest.gate?.verdict ?? null,
  };
}

export interface PromoteModelInput {
  context: StepContext;
  runId: string;
  onnx: ArtifactRef;
  /** The data source's sha256. */
  dataset: string;
  /** Absent in runs started before feedback and knowledge files counted as data. */
  dataFiles?: DataFileSteps;
  configHash: string;
}

/**
 * Activity: the pipeline's own promotion of a model whose every gate passed. Idempotent: a retried
 * attempt that finds this run already in production records nothing twice.
 */
export async function promoteModel(input: PromoteModelInput): Promise<RegistryEvent> {
  const folder = registryFolder(input.context.config, input.context.configDir);
  const current = readProduction(folder);
  if (current?.runId === input.runId) return current;
  return movePointer(folder, {
    action: 'promote',
    pipeline: input.context.config.name,
    runId: input.runId,
    model: input.onnx,
    dataset: dataFingerprint(input.dataset, input.dataFiles ?? []),
    configHash: input.configHash,
    modelConfig: modelConfigHash(input.context.config),
    verdict: 'candidate',
    forced: false,
    reason: 'every gate passed',
    by: `pipeline ${input.runId}`,
  });
}

/**
 * Activity: whether the production model was made from this data (the source, and the feedback and
 * knowledge files) and this config (schedules and promotion aside), so a scheduled run has nothing
 * new to learn; names the production run either way.
 */
export async function checkUnchanged(input: {
  context: Pick<StepContext, 'config' | 'configDir'>;
  dataset: string;
  dataFiles?: DataFileSteps;
}): Promise<{ unchanged: boolean; production: string | null }> {
  const production = readProduction(registryFolder(input.context.config, input.context.configDir));
  const unchanged =
    production?.dataset === dataFingerprint(input.dataset, input.dataFiles ?? []) &&
    production.modelConfig === modelConfigHash(input.context.config);
  return { unchanged, production: production?.runId ?? null };
}
