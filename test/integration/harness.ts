/**
 * Integration-test helpers: a real Temporal dev server on a temp SQLite file, worker processes
 * started through the real CLI (so they can be killed), and pipeline files in temp folders.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { stringify } from 'yaml';
import { startDevServer, type StartedServer } from '../../cli/server';
import { connectWorker, createWorker, installWorkerLogging } from '../../workers/create';

export const projectRoot = resolve(import.meta.dirname, '../..');
export const cliPath = join(projectRoot, 'bin', 'tuneline.mjs');

export function tempDir(prefix = 'tuneline-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestServer {
  server: StartedServer;
  client: Client;
  connection: Connection;
  dir: string;
  close: () => Promise<void>;
}

export async function startTestServer(dir = tempDir()): Promise<TestServer> {
  const server = await startDevServer({ dir });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, namespace: 'default' });
  const env: TestServer = {
    server,
    client,
    connection,
    dir,
    // Stops the server the test holds now: a test may have restarted it on the same folder.
    close: async () => {
      await connection.close().catch(() => {});
      await env.server.stop();
    },
  };
  return env;
}

/**
 * A `tuneline worker` process; its output is kept for failure messages, and its log goes to `logFile`
 * when given. `args` are more worker options; `hide` lists folders the worker must not see: it runs in
 * a mount namespace of its own (`unshare`, needs root) with an empty file system mounted over each.
 */
export function spawnWorker(
  queue: 'cpu' | 'gpu',
  address: string,
  env: NodeJS.ProcessEnv = {},
  logFile?: string,
  options: { args?: string[]; hide?: string[] } = {},
): ChildProcess & { logs: string[] } {
  const command = [
    process.execPath,
    cliPath,
    'worker',
    '--queue',
    queue,
    ...(logFile ? ['--log-file', logFile] : []),
    ...(options.args ?? []),
  ];
  const mounts = (options.hide ?? []).map((dir) => `mount -t tmpfs -o size=1m none ${JSON.stringify(dir)}`);
  const [file, ...args] = mounts.length
    ? ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `${mounts.join(' && ')} && exec "$@"`, 'sh', ...command]
    : command;
  const child = spawn(file!, args, {
    cwd: projectRoot,
    env: { ...process.env, TEMPORAL_ADDRESS: address, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as ChildProcess & { logs: string[] };
  child.logs = [];
  child.stdout!.on('data', (d: Buffer) => child.logs.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => child.logs.push(d.toString()));
  return child;
}

export async function killAndWait(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  child.kill(signal);
  await exited;
}

/** Writes a pipeline file whose artifacts stay inside `dir`. */
export function writePipeline(dir: string, config: Record<string, unknown>): string {
  const path = join(dir, 'temporal.yaml');
  writeFileSync(path, stringify({ storage: { artifacts: join(dir, 'artifacts') }, ...config }));
  return path;
}

/** Polls until `predicate` holds, for eventually consistent things (progress, visibility). */
export async function waitFor<T>(probe: () => Promise<T>, predicate: (v: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined as T);
    if (value !== undefined && predicate(value)) return value;
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms; last value ${JSON.stringify(value)}`);
    await sleep(200);
  }
}

/**
 * Attempts of each activity type in a run's history and its child workflows' histories (the stages
 * run as children), to prove what was or was not retried.
 */
export async function activityAttempts(handle: WorkflowHandle): Promise<Record<string, number>> {
  const history = await handle.fetchHistory();
  const typeById = new Map<string, string>();
  const attempts: Record<string, number> = {};
  const children: Array<{ workflowId: string; runId: string }> = [];
  for (const e of history.events ?? []) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) typeById.set(String(e.eventId), scheduled.activityType?.name ?? '?');
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const type = typeById.get(String(started.scheduledEventId)) ?? '?';
      attempts[type] = Math.max(attempts[type] ?? 0, started.attempt ?? 1);
    }
    const child = e.childWorkflowExecutionStartedEventAttributes?.workflowExecution;
    if (child?.workflowId && child.runId) children.push({ workflowId: child.workflowId, runId: child.runId });
  }
  for (const child of children) {
    const inChild = await activityAttempts(handle.client.getHandle(child.workflowId, child.runId));
    for (const [type, n] of Object.entries(inChild)) attempts[type] = Math.max(attempts[type] ?? 0, n);
  }
  return attempts;
}

/**
 * The part of a pipeline file that trains and evaluates a tiny model in seconds: `maxSteps` steps,
 * checkpoints and validation every 4, no grounding, 4 test rows against the untuned base model.
 */
export function tinyRun(tinyModel: string, maxSteps: number) {
  return {
    data: { sample: { rows: 300, seed: 5 }, columns: { category: 'category', product: 'product', fact: 'fact' } },
    model: { base: tinyModel },
    training: {
      maxSteps,
      batchSize: 4,
      maxLength: 96,
      checkpointEvery: 4,
      evalEvery: 4,
      maxValidationRows: 8,
      device: 'cpu',
      grounding: { k: 0 },
      activity: { heartbeat: '30s', maxAttempts: 3 },
    },
    evaluation: { baselines: ['base'], forgettingCheck: false, maxTestRows: 4, maxNewTokens: 8, batchSize: 4 },
    gates: [{ metric: 'rougeL', min: 0 }],
    // A model these gates pass would wait for people; tests of review turn it on themselves.
    review: { enabled: false },
  };
}

/**
 * A tiny random model (engine/tests/tiny_models.py): real training, fractions of a second per step. `llama`: 2 layers with
 * the default model's real tokenizer and chat template; `gpt2`: 2 layers, 128 positions, its own small BPE and no chat
 * template, so it trains and is asked in the plain format; `t5`: a 2-layer encoder-decoder with its own small tokenizer.
 */
export function buildTinyModel(kind: 'llama' | 'gpt2' | 't5' = 'llama'): string {
  const path = join(tempDir('tuneline-tiny-'), `tiny-${kind}`);
  execFileSync(join(projectRoot, '.venv', 'bin', 'python'), ['-m', 'engine.tests.tiny_models', kind, path], {
    cwd: projectRoot,
    stdio: 'inherit',
  });
  return path;
}

/**
 * A dev server with a cpu and a gpu worker in this process, for scripts (the replay recorder, the
 * sweep benchmark); `stop` shuts the workers down, then the connections and the server.
 */
export async function startInProcessTemporal(work: string): Promise<{ client: Client; stop: () => Promise<void> }> {
  installWorkerLogging(join(work, 'worker.log'));
  const server = await startDevServer({ dir: join(work, 'temporal') });
  const connection = await connectWorker({ address: server.address, namespace: 'default' });
  const workers = [await createWorker('cpu', connection, 'default'), await createWorker('gpu', connection, 'default')];
  const running = workers.map((w) => w.run());
  const clientConnection = await Connection.connect({ address: server.address });
  return {
    client: new Client({ connection: clientConnection }),
    stop: async () => {
      for (const w of workers) w.shutdown();
      await Promise.all(running);
      await clientConnection.close();
      await connection.close();
      await server.stop();
    },
  };
}
