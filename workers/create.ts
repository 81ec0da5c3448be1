/**
 * Builds the worker for one task queue. The cpu worker runs the workflows, the data activities and
 * the light evaluation steps; the gpu worker runs whatever runs the model (one activity at a time
 * per GPU): training, export, generation and perplexity.
 */
import { mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel } from '@temporalio/worker';
import type { TemporalTarget } from '../cli/connection';
import { cpuActivities } from '../activities/cpu';
import { gpuActivities } from '../activities/gpu';
import { dataConverterFromEnv } from '../lib/encryption';
import { TaskQueues, type QueueName } from '../workflows/definitions';

/** The workflow bundle's entry, for workers and for replaying histories. */
export const workflowsPath = new URL('../workflows/index.ts', import.meta.url).pathname;

const LOG_LEVELS: readonly LogLevel[] = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

/** TUNELINE_LOG_LEVEL (trace, debug, info, warn, error); WARN when unset or unknown. */
export function workerLogLevel(env: NodeJS.ProcessEnv = process.env): LogLevel {
  const wanted = env.TUNELINE_LOG_LEVEL?.toUpperCase() as LogLevel | undefined;
  return wanted && LOG_LEVELS.includes(wanted) ? wanted : 'WARN';
}

/**
 * Sends this process's worker and SDK logs to `logFile` (appended, one entry per line, errors with
 * their stacks; the Rust core's logs are forwarded there too), or to stderr without one. `tuneline run` passes a file:
 * its terminal shows the progress lines and one clear message for a user error, while the worker's
 * warnings about the failed activity, stack traces and all, are in the file for whoever wants them.
 * Call once, before the first worker or native connection is created.
 */
export function installWorkerLogging(logFile?: string, level: LogLevel = workerLogLevel()): void {
  let write: (line: string) => void = (line) => process.stderr.write(line);
  if (logFile) {
    mkdirSync(dirname(logFile), { recursive: true });
    const fd = openSync(logFile, 'a');
    // Synchronous, so the last entries before an exit are in the file too.
    write = (line) => writeSync(fd, line);
  }
  // The gpu worker polls activities only, by design; the SDK warns about that on every start.
  const expected = /No workflows registered/;
  const logger = new DefaultLogger(level, (entry) => {
    if (expected.test(entry.message)) return;
    const time = new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString();
    const meta = entry.meta ? ` ${inspect(entry.meta, { depth: 6, breakLength: Infinity })}` : '';
    write(`${time} ${entry.level.padEnd(5)} ${entry.message}${meta}\n`);
  });
  const filter = { core: level, other: 'ERROR' } as const;
  // The core (Rust) writes its logs straight to stderr unless they are forwarded to the logger. A
  // forwarding runtime keeps the process alive until its last connection closes: see closeWorkerConnection.
  Runtime.install({ logger, telemetryOptions: { logging: logFile ? { filter, forward: {} } : { filter } } });
}

/**
 * Closes the workers' connection once they have stopped: a runtime that forwards the core's logs
 * keeps the process alive until its last connection closes.
 */
export async function closeWorkerConnection(workers: Worker[], connection: NativeConnection | undefined): Promise<void> {
  if (!connection) return;
  const stopped = () => workers.every((w) => w.getState() === 'STOPPED' || w.getState() === 'FAILED');
  while (!stopped()) await new Promise((done) => setTimeout(done, 100));
  await connection.close();
}

export async function connectWorker(target: TemporalTarget): Promise<NativeConnection> {
  return NativeConnection.connect({ address: target.address, tls: target.tls, apiKey: target.apiKey });
}

/**
 * `slots`: activities this worker runs at once. The gpu worker's default is one, a training per GPU
 * (or per CPU machine); the cpu worker's is the SDK's.
 */
export async function createWorker(
  queue: QueueName,
  connection: NativeConnection,
  namespace: string,
  identity?: string,
  slots?: number,
): Promise<Worker> {
  const common = {
    connection,
    namespace,
    taskQueue: TaskQueues[queue],
    dataConverter: dataConverterFromEnv(),
    ...(identity ? { identity } : {}),
  };
  if (queue === 'cpu') {
    return Worker.create({
      ...common,
      workflowsPath,
      activities: cpuActivities,
      ...(slots ? { maxConcurrentActivityTaskExecutions: slots } : {}),
    });
  }
  return Worker.create({
    ...common,
    activities: gpuActivities,
    // One training at a time per GPU (or per CPU machine), unless told otherwise.
    maxConcurrentActivityTaskExecutions: slots ?? 1,
    // Training heartbeats carry live step and loss for `tuneline run`; send them every few seconds, not every minute.
    maxHeartbeatThrottleInterval: '5s',
    // On SIGTERM, cancel training at once so the engine writes a checkpoint; allow that much time before forcing.
    shutdownGraceTime: '1s',
    shutdownForceTime: '3m',
  });
}
