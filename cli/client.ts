/**
 * The typed client library for scripts: start a pipeline run, follow it (into the stage workflows it
 * starts), read its result and its run manifest; start, follow and cancel a sweep.
 *
 *   const session = await openSession();
 *   const handle = await startPipeline(session.client, requireValidConfig('temporal.yaml'));
 *   const result = await handle.result();
 *
 *   const sweep = await startSweep(session.client, requireValidConfig('temporal.yaml'));
 *   const { trials } = await sweepStatus(session.client, sweep.workflowId);
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Client, WorkflowHandle, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import type { LoadedDataConverter, Payload } from '@temporalio/common';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import { artifactPath } from '../activities/artifacts';
import { runLocation } from '../activities/context';
import { stageLocalFiles } from './stage';
import { currentUser } from '../lib/who';
import { StorageSection } from '../schemas/config';
import {
  RunManifest,
  type GenerationProgress,
  type PipelineInput,
  type PipelineResult,
  type StartedBy,
  type SweepInput,
  type SweepProgress,
  type SweepResult,
  type TrainProgress,
  type WorkflowProgress,
} from '../schemas/manifests';
import { SearchAttributes, TaskQueues, progressQuery, sweepQuery } from '../workflows/definitions';
import type { finetunePipeline } from '../workflows/pipeline';
import type { sweep } from '../workflows/sweep';
import type { LoadedConfig } from './config';

export type PipelineHandle = WorkflowHandleWithFirstExecutionRunId<typeof finetunePipeline>;

export interface StartOptions {
  noCache?: boolean;
  workflowId?: string;
  dataHeartbeatTimeout?: string;
  stopAfter?: PipelineInput['stopAfter'];
  /** End as `unchanged` when the data and config are those of the production model. */
  onlyIfChanged?: boolean;
  /** What started the run, for its manifest: `tuneline run`, or this script by default. */
  command?: string;
}

/** Readable, sortable and unique: `<pipeline>-<UTC time>-<random>`. */
export function newRunId(pipeline: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..+/, '').replace('T', '-');
  return `${pipeline}-${stamp}-${Math.random().toString(36).slice(2, 6)}`;
}

/** Who is starting a run, from where: the manifest records it. */
export function startedBy(command = `script ${process.argv[1] ?? 'node'}`): StartedBy {
  return { user: currentUser(), host: hostname(), cwd: process.cwd(), command };
}

/** The search attributes and memo every run and sweep starts with: what it is and who started it. */
export function startAttributes(name: string, input: Omit<PipelineInput, 'stopAfter'>, sweepId?: string) {
  const by = input.schedule ? `schedule ${input.schedule}` : `${input.startedBy!.user}@${input.startedBy!.host}`;
  return {
    typedSearchAttributes: [
      { key: SearchAttributes.pipeline, value: name },
      { key: SearchAttributes.stage, value: 'queued' },
      { key: SearchAttributes.configHash, value: input.configHash },
      { key: SearchAttributes.startedBy, value: by },
      ...(sweepId ? [{ key: SearchAttributes.sweep, value: sweepId }] : []),
    ],
    memo: { startedBy: input.startedBy, configFile: input.configFile ?? null, schedule: input.schedule ?? null },
  };
}

/** What a run or a sweep is started with: the pipeline file as written, and who started it. */
export function startInput(loaded: LoadedConfig, options: StartOptions): Omit<PipelineInput, 'stopAfter'> {
  return {
    config: loaded.raw,
    configDir: loaded.configDir,
    configFile: loaded.path,
    configHash: loaded.configHash,
    noCache: options.noCache,
    dataHeartbeatTimeout: options.dataHeartbeatTimeout,
    startedBy: startedBy(options.command),
  };
}

export async function startPipeline(client: Client, loaded: LoadedConfig, options: StartOptions = {}): Promise<PipelineHandle> {
  const name = loaded.config?.name ?? 'invalid-config';
  const input: PipelineInput = {
    ...startInput(loaded, options),
    stopAfter: options.stopAfter,
    onlyIfChanged: options.onlyIfChanged,
    staged: loaded.config && (await stageLocalFiles(loaded.config, loaded.configDir)),
  };
  return client.workflow.start('finetunePipeline', {
    taskQueue: TaskQueues.cpu,
    workflowId: options.workflowId ?? newRunId(name),
    args: [input],
    ...startAttributes(name, input),
  }) as Promise<PipelineHandle>;
}

async function ownProgress(handle: WorkflowHandle): Promise<WorkflowProgress | undefined> {
  try {
    return await handle.query(progressQuery);
  } catch {
    return undefined;
  }
}

/**
 * A run's progress with its stage workflows followed: the steps of finished stages (which the run
 * keeps), then those of the stage running or failed now, whose stage is then the run's.
 */
export async function queryProgress(handle: WorkflowHandle): Promise<WorkflowProgress | undefined> {
  const own = await ownProgress(handle);
  if (!own) return undefined;
  const progress: WorkflowProgress = { ...own, steps: [...own.steps] };
  for (const child of own.children.filter((c) => c.status !== 'completed')) {
    const inner = await queryProgress(handle.client.getHandle(child.workflowId));
    if (!inner) continue;
    progress.steps.push(...inner.steps);
    if (child.status === 'running') progress.stage = inner.stage;
    progress.error ??= inner.error;
  }
  return progress;
}

/** The newest heartbeat details of a pending activity of this type, in the run or the stage workflow running now. */
export async function activityProgress<T>(handle: WorkflowHandle, activityType: string): Promise<T | undefined> {
  const description = await handle.describe().catch(() => undefined);
  const pending = description?.raw.pendingActivities?.find((a) => a.activityType?.name === activityType);
  const payloads = pending?.heartbeatDetails?.payloads;
  if (payloads?.length) return decodePayload<T>(handle.client, payloads);
  const running = (await ownProgress(handle))?.children.find((c) => c.status === 'running');
  return running ? activityProgress<T>(handle.client.getHandle(running.workflowId), activityType) : undefined;
}

/** The training activity's last heartbeat (step, loss, tokens/s, checkpoint), while it runs. */
export function trainingProgress(handle: WorkflowHandle): Promise<TrainProgress | undefined> {
  return activityProgress<TrainProgress>(handle, 'trainModel');
}

/** The generation activity's last heartbeat (rows answered, tokens), while it runs. */
export function generationProgress(handle: WorkflowHandle): Promise<GenerationProgress | undefined> {
  return activityProgress<GenerationProgress>(handle, 'generateAnswers');
}

/**
 * A run's or sweep's folder (`<storage.runs>/<id>/`, where `run.json` or `sweep.json` is), found
 * through the workflow's own input, so a failed run's is found too; undefined when its input is gone.
 */
export async function recordFolder(handle: WorkflowHandle): Promise<string | undefined> {
  const history = await handle.fetchHistory();
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  if (!started?.input?.payloads?.length) return undefined;
  return recordFolderOf(await decodePayload<PipelineInput>(handle.client, started.input.payloads), handle.workflowId);
}

/** Where a run's or sweep's record is, from its input. */
export function recordFolderOf(input: Pick<PipelineInput, 'config' | 'configDir'>, workflowId: string): string {
  const storage = StorageSection.safeParse((input.config as { storage?: unknown } | null)?.storage ?? {});
  return runLocation(storage.success ? storage.data : StorageSection.parse({}), input.configDir, workflowId);
}

/**
 * One payload of a history event, decoded as this client's data converter (and its encryption codec)
 * says; an encrypted payload without the key fails, and the command line says which variable to set
 * (lib/encryption.ts `keyErrorOf`).
 */
export function decodePayload<T>(
  client: { options: { loadedDataConverter: LoadedDataConverter } },
  payloads: Payload[] | null | undefined,
  index = 0,
): Promise<T> {
  return decodeFromPayloadsAtIndex<T>(client.options.loadedDataConverter, index, payloads);
}

/** A finished run's manifest (`run.json`), read from the artifact store and checked against its schema. */
export function readRunManifest(result: Pick<PipelineResult, 'manifest'>): RunManifest {
  return RunManifest.parse(JSON.parse(readFileSync(artifactPath(result.manifest), 'utf8')));
}

export type { PipelineResult };

export type SweepHandle = WorkflowHandleWithFirstExecutionRunId<typeof sweep>;

export interface SweepStartOptions extends Pick<StartOptions, 'noCache' | 'workflowId' | 'dataHeartbeatTimeout' | 'command'> {
  /** Continue as new at the next rung once the history has this many events (tests set a few). */
  continueAsNewAfterEvents?: number;
}

/** Starts a sweep of the pipeline file's `sweep:` grid; its id is `<pipeline>-sweep-<UTC time>-<random>`. */
export async function startSweep(client: Client, loaded: LoadedConfig, options: SweepStartOptions = {}): Promise<SweepHandle> {
  const name = loaded.config?.name ?? 'invalid-config';
  const input: SweepInput = {
    ...startInput(loaded, options),
    continueAsNewAfterEvents: options.continueAsNewAfterEvents,
    staged: loaded.config && (await stageLocalFiles(loaded.config, loaded.configDir)),
  };
  const workflowId = options.workflowId ?? newRunId(`${name}-sweep`);
  return client.workflow.start('sweep', {
    taskQueue: TaskQueues.cpu,
    workflowId,
    args: [input],
    ...startAttributes(name, input, workflowId),
  }) as Promise<SweepHandle>;
}

/** A sweep as it stands: the server's status, and every trial (from its result once it has ended, else its `sweep` query). */
export async function sweepStatus(
  client: Client,
  sweepId: string,
): Promise<{ status: string; progress: SweepProgress | undefined; result?: SweepResult; error?: string }> {
  const handle = client.workflow.getHandle<typeof sweep>(sweepId);
  const status = (await handle.describe()).status.name;
  if (status === 'COMPLETED') {
    const result = await handle.result();
    const { metric, totalSteps, rungs, trials, winner } = result;
    return { status, result, progress: { stage: 'done', metric, totalSteps, rungs, trials, winner } };
  }
  let error: string | undefined;
  if (status === 'FAILED')
    error = await handle.result().then(
      () => undefined,
      (err: Error & { cause?: Error }) => err.cause?.message ?? err.message,
    );
  // Only a worker answers the query; without one, say what the server knows instead of waiting.
  const progress = await client.withDeadline(Date.now() + 5_000, () => handle.query(sweepQuery)).catch(() => undefined);
  return { status, progress, error };
}

/** Cancels a sweep: its running trials are cancelled with it (training stops at a checkpoint). */
export async function cancelSweep(client: Client, sweepId: string): Promise<void> {
  await client.workflow.getHandle(sweepId).cancel();
}

export type { SweepProgress, SweepResult };
