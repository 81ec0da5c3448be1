/**
 * Builds the worker for one task queue. The cpu worker runs the workflows, the data activities and
 * the light evaluation steps; the gpu worker runs whatever runs the model (one activity at a time
 * per GPU): training, export, generation and perplexity.
 */
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import type { TemporalTarget } from '../cli/connection';
import * as dataActivities from '../activities/data-stage';
import { checkForgetting, generateAnswers, prepareEvaluationSet, retrieveAnswers, scoreAnswers } from '../activities/evaluate';
import { exportBaseModel, exportModel } from '../activities/export';
import { writeRunReport } from '../activities/report/evaluation-report';
import { trainModel } from '../activities/train';
import { TaskQueues, type QueueName } from '../workflows/definitions';

const workflowsPath = new URL('../workflows/index.ts', import.meta.url).pathname;

/** Worker and bundler chatter at INFO drowns the progress lines; warnings and errors still show. */
export function installQuietRuntime(level: 'WARN' | 'INFO' = 'WARN'): void {
  const console = new DefaultLogger(level);
  // The gpu worker polls activities only, by design; the SDK warns about that on every start.
  const expected = /No workflows registered/;
  const logger = new DefaultLogger(level, (entry) => {
    if (!expected.test(entry.message)) console.log(entry.level, entry.message, entry.meta);
  });
  Runtime.install({ logger });
}

export async function connectWorker(target: TemporalTarget): Promise<NativeConnection> {
  return NativeConnection.connect({ address: target.address, tls: target.tls, apiKey: target.apiKey });
}

export async function createWorker(queue: QueueName, connection: NativeConnection, namespace: string, identity?: string): Promise<Worker> {
  const common = { connection, namespace, taskQueue: TaskQueues[queue], ...(identity ? { identity } : {}) };
  if (queue === 'cpu') {
    return Worker.create({
      ...common,
      workflowsPath,
      activities: { ...dataActivities, prepareEvaluationSet, retrieveAnswers, scoreAnswers, writeRunReport },
    });
  }
  return Worker.create({
    ...common,
    activities: { trainModel, exportModel, exportBaseModel, generateAnswers, checkForgetting },
    // One training at a time per GPU (or per CPU machine).
    maxConcurrentActivityTaskExecutions: 1,
    // Training heartbeats carry live step and loss for `tuneline run`; send them every few seconds, not every minute.
    maxHeartbeatThrottleInterval: '5s',
    // On SIGTERM, cancel training at once so the engine writes a checkpoint; allow that much time before forcing.
    shutdownGraceTime: '1s',
    shutdownForceTime: '3m',
  });
}
