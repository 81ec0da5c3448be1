import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { workerLogPath } from '../../cli/logs';
import { inspectServer, judgeServerRecord, readServerRecord, removeServerRecord, type ServerRecord } from '../../cli/server';
import { workerLogLevel } from '../../workers/create';

const record = (extra: Partial<ServerRecord> = {}): ServerRecord => ({
  pid: 1001,
  address: '127.0.0.1:7233',
  uiUrl: 'http://127.0.0.1:8233',
  dbFile: '/state/temporal.db',
  longLived: false,
  ownerPid: 2002,
  ...extra,
});

describe('what a server record means', () => {
  const longLived = record({ longLived: true, ownerPid: undefined });
  const embedded = record();
  it.each([
    ['no record: start one', undefined, true, true, 'none'],
    ['a long-lived server that runs: use it', longLived, true, false, 'long-lived'],
    ['a long-lived server that is gone: remove the record, start one', longLived, false, false, 'stale'],
    ['an embedded server whose owner died: adopt it', embedded, true, false, 'orphaned'],
    ['an embedded server whose owner runs: refuse', embedded, true, true, 'in-use'],
    ['an embedded server that is gone, owner alive or not: start one', embedded, false, true, 'stale'],
    ['an embedded server that is gone with its owner', embedded, false, false, 'stale'],
  ] as const)('%s', (_name, given, server, owner, kind) => {
    const state = judgeServerRecord(given, { server, owner });
    expect(state.kind).toBe(kind);
    if (given) expect(state).toEqual({ kind, record: given });
  });
});

describe('the record on disk, judged by the processes it names', () => {
  const children: ChildProcess[] = [];
  /** A process whose command line names `mention`, as a dev server's names its database. */
  const live = (mention = 'idle') => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)', mention], { stdio: 'ignore' });
    children.push(child);
    // Between fork and exec the child's command line is still this process's.
    const started = Date.now();
    while (
      existsSync('/proc/self') &&
      !readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').includes(mention) &&
      Date.now() - started < 5000
    );
    return child.pid!;
  };
  const dead = async () => {
    const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    await new Promise((done) => child.once('exit', done));
    return child.pid!;
  };
  const folder = (contents?: ServerRecord | Record<string, unknown>) => {
    const dir = mkdtempSync(join(tmpdir(), 'tuneline-record-'));
    if (contents) writeFileSync(join(dir, 'server.json'), JSON.stringify(contents));
    return dir;
  };
  afterAll(() => {
    for (const child of children) child.kill('SIGKILL');
  });

  it('an embedded server whose owner was killed is orphaned; with its owner running it is in use', async () => {
    const dir = folder();
    const dbFile = join(dir, 'temporal.db');
    const server = live(dbFile);
    writeFileSync(join(dir, 'server.json'), JSON.stringify(record({ pid: server, dbFile, ownerPid: await dead() })));
    expect(inspectServer(dir).kind).toBe('orphaned');
    writeFileSync(join(dir, 'server.json'), JSON.stringify(record({ pid: server, dbFile, ownerPid: live() })));
    expect(inspectServer(dir).kind).toBe('in-use');
  });

  it('a record naming this process as owner is a dead owner whose pid this process got', () => {
    const dir = folder();
    const dbFile = join(dir, 'temporal.db');
    writeFileSync(join(dir, 'server.json'), JSON.stringify(record({ pid: live(dbFile), dbFile, ownerPid: process.pid })));
    expect(inspectServer(dir).kind).toBe('orphaned');
  });

  it('a server pid that is gone, or now belongs to a process that is no dev server on this database, is stale', async () => {
    const dir = folder();
    const dbFile = join(dir, 'temporal.db');
    writeFileSync(join(dir, 'server.json'), JSON.stringify(record({ pid: await dead(), dbFile, ownerPid: live() })));
    expect(inspectServer(dir).kind).toBe('stale');
    writeFileSync(join(dir, 'server.json'), JSON.stringify(record({ pid: live('something else'), dbFile, longLived: true })));
    expect(inspectServer(dir).kind).toBe(process.platform === 'linux' ? 'stale' : 'long-lived');
  });

  it('reads a record from before embedded servers were recorded as the long-lived one it was', () => {
    const dir = folder({ pid: 5, address: '127.0.0.1:7233', uiUrl: 'http://127.0.0.1:8233', dbFile: '/x/temporal.db' });
    expect(readServerRecord(dir)).toMatchObject({ pid: 5, longLived: true });
    expect(readServerRecord(folder({ not: 'a record' }))).toBeUndefined();
    expect(inspectServer(folder())).toEqual({ kind: 'none' });
  });

  it('is removed only for the server it describes', () => {
    const dir = folder(record({ pid: 7 }));
    removeServerRecord(dir, 8);
    expect(existsSync(join(dir, 'server.json'))).toBe(true);
    removeServerRecord(dir, 7);
    expect(existsSync(join(dir, 'server.json'))).toBe(false);
  });
});

describe('worker logs', () => {
  it('go to a file per process under the state folder, named by UTC time', () => {
    const path = workerLogPath('/state', new Date('2026-11-28T03:54:44.123Z'));
    expect(path).toBe(`/state/logs/worker-20261128-035444-${process.pid}.log`);
  });

  it('are at WARN unless TUNELINE_LOG_LEVEL says otherwise', () => {
    expect(workerLogLevel({})).toBe('WARN');
    expect(workerLogLevel({ TUNELINE_LOG_LEVEL: 'info' })).toBe('INFO');
    expect(workerLogLevel({ TUNELINE_LOG_LEVEL: 'DEBUG' })).toBe('DEBUG');
    expect(workerLogLevel({ TUNELINE_LOG_LEVEL: 'loud' })).toBe('WARN');
  });
});
