/**
 * The typed client library for scripts: start a pipeline run, follow it, read its result.
 *
 *   const session = await openSession();
 *   const handle = await startPipeline(session.client, requireValidConfig('temporal.yaml'));
 *   const result = await handle.result();
 */
import type { Client, WorkflowHandle, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { PipelineInput, PipelineProgress, PipelineResult, TrainProgress } from '../schemas/manifests';
import { SearchAttributes, TaskQueues, progressQuery } from '../workflows/definitions';
import type { finetunePipeline } from '../workflows/pipeline';
import type { LoadedConfig } from './config';

export type PipelineHandle = WorkflowHandleWithFirstExecutionRunId<typeof finetunePipeline>;

export interface StartOptions {
  noCache?: boolean;
  workflowId?: string;
  dataHeartbeatTimeout?: string;
  stopAfter?: PipelineInput['stopAfter'];
}

/** Readable, sortable and unique: `<pipeline>-<UTC time>-<random>`. */
export function newRunId(pipeline: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..+/, '').replace('T', '-');
  return `${pipeline}-${stamp}-${Math.random().toString(36).slice(2, 6)}`;
}

export async function startPipeline(client: Client, loaded: LoadedConfig, options: StartOptions = {}): Promise<PipelineHandle> {
  const name = loaded.config?.name ?? 'invalid-config';
  const input: PipelineInput = {
    config: loaded.raw,
    configDir: loaded.configDir,
    configHash: loaded.configHash,
    noCache: options.noCache,
    dataHeartbeatTimeout: options.dataHeartbeatTimeout,
    stopAfter: options.stopAfter,
  };
  return client.workflow.start('finetunePipeline', {
    taskQueue: TaskQueues.cpu,
    workflowId: options.workflowId ?? newRunId(name),
    args: [input],
    typedSearchAttributes: [
      { key: SearchAttributes.pipeline, value: name },
      { key: SearchAttributes.stage, value: 'queued' },
    ],
  }) as Promise<PipelineHandle>;
}

export async function queryProgress(handle: WorkflowHandle): Promise<PipelineProgress | undefined> {
  try {
    return await handle.query(progressQuery);
  } catch {
    return undefined;
  }
}

/** The newest heartbeat details of the workflow's pending activity of this type, if it has sent one. */
export async function activityProgress<T>(handle: WorkflowHandle, activityType: string): Promise<T | undefined> {
  const description = await handle.describe().catch(() => undefined);
  const pending = description?.raw.pendingActivities?.find((a) => a.activityType?.name === activityType);
  const payload = pending?.heartbeatDetails?.payloads?.[0];
  return payload ? defaultPayloadConverter.fromPayload<T>(payload) : undefined;
}

/** The training activity's last heartbeat (step, loss, tokens/s, checkpoint), while it runs. */
export function trainingProgress(handle: WorkflowHandle): Promise<TrainProgress | undefined> {
  return activityProgress<TrainProgress>(handle, 'trainModel');
}

export type { PipelineResult };
