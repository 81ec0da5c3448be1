/**
 * Activity proxies by task queue. Each queue's activity set comes from its registry
 * (`activities/cpu.ts`, `activities/gpu.ts`), the same object its workers register, so calling an
 * activity on a queue that does not serve it is a type error, not a task that waits forever.
 */
import { proxyActivities, type ActivityInterfaceFor, type ActivityOptions } from '@temporalio/workflow';
import type { cpuActivities } from '../activities/cpu';
import type { gpuActivities } from '../activities/gpu';
import type { PipelineConfig } from '../schemas/config';
import { NON_RETRYABLE_ERROR_TYPES } from '../schemas/errors';
import { TaskQueues, type QueueName } from './definitions';

export interface QueueActivities {
  cpu: typeof cpuActivities;
  gpu: typeof gpuActivities;
}

/** The activities of one task queue; user errors (config, data, parity) are never retried. */
export function activitiesOn<Q extends QueueName>(
  queue: Q,
  options: Omit<ActivityOptions, 'taskQueue' | 'retry'> & { maximumAttempts: number },
): ActivityInterfaceFor<QueueActivities[Q]> {
  const { maximumAttempts, ...rest } = options;
  return proxyActivities<QueueActivities[Q]>({
    ...rest,
    taskQueue: TaskQueues[queue],
    retry: {
      initialInterval: queue === 'gpu' ? '5s' : '1s',
      backoffCoefficient: 2,
      maximumInterval: queue === 'gpu' ? '2m' : '1m',
      maximumAttempts,
      nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES],
    },
  });
}

/** The cpu queue: data steps, the retrieval baseline, scoring, the manifest and the report (each minutes at most). */
export const cpuActivitiesFor = (heartbeatTimeout = '1m') =>
  activitiesOn('cpu', { startToCloseTimeout: '30m', heartbeatTimeout, maximumAttempts: 5 });

/** The gpu queue: whatever runs the model, with the timeouts and retries of `training.activity`. */
export const gpuActivitiesFor = (config: PipelineConfig) =>
  activitiesOn('gpu', {
    startToCloseTimeout: config.training.activity.startToClose,
    heartbeatTimeout: config.training.activity.heartbeat,
    maximumAttempts: config.training.activity.maxAttempts,
  });
