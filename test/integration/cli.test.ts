import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { readServerRecord } from '../../cli/server';
import { openSession } from '../../cli/session';
import { activityAttempts, cliPath, killAndWait, projectRoot, tempDir, writePipeline } from './harness';

/** Its own state folder and no configured cluster: the embedded server path. */
const inHome = (home: string) => ({ cwd: projectRoot, env: { ...process.env, TEMPORAL_ADDRESS: '', TUNELINE_HOME: home } });

/** The real `tuneline` command. */
function tuneline(home: string, ...args: string[]) {
  const out = spawnSync(process.execPath, [cliPath, ...args], { ...inHome(home), encoding: 'utf8', timeout: 180_000 });
  return { code: out.status, stdout: out.stdout, stderr: out.stderr };
}

/**
 * Starts `tuneline ARGS` (`run …` or `sweep start …`) in its own process group and, once stdout
 * matches `when`, signals the whole group with SIGINT, as a terminal's Ctrl-C does. Resolves with the
 * exit code and output.
 */
async function interrupt(home: string, args: string[], when: RegExp) {
  const child = spawn(process.execPath, [cliPath, ...args], { ...inHome(home), detached: true });
  let stdout = '';
  let stderr = '';
  let interrupted = false;
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk;
    if (!interrupted && when.test(stdout)) interrupted = process.kill(-child.pid!, 'SIGINT');
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, stdout, stderr };
}

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('tuneline on the embedded dev server', () => {
  it('run --json starts a server, runs the data stage, prints one JSON object and stops the server', () => {
    const home = tempDir();
    const config = writePipeline(tempDir(), { name: 'cli-run', data: { sample: { rows: 500, seed: 3 } } });
    const { code, stdout, stderr } = tuneline(home, 'run', '--config', config, '--until', 'data', '--json');
    expect(code, stderr).toBe(0);
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const out = JSON.parse(lines[0]!);
    expect(out).toMatchObject({ status: 'completed', result: { outcome: 'data-ready', pipeline: 'cli-run' } });
    expect(out.workflowId).toMatch(/^cli-run-/);
    expect(existsSync(join(out.result.runFolder, 'train.arrow'))).toBe(true);
    expect(stderr).toMatch(/Web UI http:\/\/127\.0\.0\.1:\d+/);
    // The server it started is gone: no process holds its database any more.
    expect(spawnSync('pgrep', ['-f', join(home, 'temporal.db')]).status).toBe(1);
    expect(existsSync(join(home, 'server.json'))).toBe(false); // its record went with it
    expect(tuneline(home, 'temporal', 'status').code).toBe(1);
  });

  it('temporal start, status and stop manage a long-lived server that status RUN_ID can read runs from', () => {
    const home = tempDir();
    const config = writePipeline(tempDir(), { name: 'cli-server', data: { sample: { rows: 300, seed: 4 } } });
    expect(tuneline(home, 'temporal', 'start').stdout).toMatch(/^Temporal 127\.0\.0\.1:\d+, Web UI/);
    try {
      const status = tuneline(home, 'temporal', 'status');
      expect(status.code).toBe(0);
      expect(status.stdout).toContain('long-lived');
      const pid = Number(/pid (\d+)/.exec(status.stdout)![1]);
      expect(pidAlive(pid)).toBe(true);
      const run = JSON.parse(tuneline(home, 'run', '--config', config, '--until', 'data', '--json').stdout);
      expect(run.status).toBe('completed');
      expect(pidAlive(pid)).toBe(true);
      const shown = JSON.parse(tuneline(home, 'status', run.workflowId, '--json').stdout);
      expect(shown).toMatchObject({ status: 'COMPLETED', stage: 'done', result: { pipeline: 'cli-server' } });
      const text = tuneline(home, 'status', run.workflowId).stdout;
      expect(text).toContain(`${run.workflowId}: COMPLETED, stage done`);
      expect(text).toContain('Data stage done for "cli-server".');
    } finally {
      expect(tuneline(home, 'temporal', 'stop').stdout).toMatch(/^Stopped \(pid \d+\)\./);
    }
    expect(tuneline(home, 'temporal', 'status').code).toBe(1);
  });

  it('Ctrl-C ends the run (terminated, exit 130) and the same command goes on from the cache', async () => {
    const home = tempDir();
    const config = writePipeline(tempDir(), { name: 'cli-interrupt', data: { sample: { rows: 10000, seed: 5 } } });
    const { code, stdout, stderr } = await interrupt(home, ['run', '--config', config, '--until', 'data'], /\+ source/);
    expect(code, stderr).toBe(130);
    const runId = /Interrupted: run (cli-interrupt-\S+) stopped/.exec(stdout)?.[1];
    expect(runId, stdout).toBeDefined();
    expect(stdout).toContain('Run the same command again to go on: finished steps are reused from cache');
    expect(spawnSync('pgrep', ['-f', join(home, 'temporal.db')]).status).toBe(1); // the server it started is stopped

    const again = tuneline(home, 'run', '--config', config, '--until', 'data');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/Reused from cache: source/);
    const shown = JSON.parse(tuneline(home, 'status', runId!, '--json').stdout);
    expect(shown.status).toBe('TERMINATED');
  });

  it('Ctrl-C on run --no-workers detaches the client and leaves the run open', async () => {
    const home = tempDir();
    const config = writePipeline(tempDir(), { name: 'cli-detach', data: { sample: { rows: 300, seed: 6 } } });
    const { code, stdout } = await interrupt(home, ['run', '--config', config, '--no-workers'], /^Run /m);
    expect(code).toBe(130);
    const runId = /Detached: run (cli-detach-\S+) stays open/.exec(stdout)?.[1];
    expect(runId, stdout).toBeDefined();
    expect(spawnSync('pgrep', ['-f', join(home, 'temporal.db')]).status).toBe(1);
    expect(JSON.parse(tuneline(home, 'status', runId!, '--json').stdout).status).toBe('RUNNING');
  });

  it('Ctrl-C on sweep start ends the sweep and its trials (terminated, exit 130)', async () => {
    const home = tempDir();
    const config = writePipeline(tempDir(), { name: 'cli-sweep', data: { sample: { rows: 10000, seed: 7 } }, sweep: { rank: [4] } });
    const { code, stdout, stderr } = await interrupt(home, ['sweep', 'start', '--config', config], /^Sweep /m);
    expect(code, stderr).toBe(130);
    const sweepId = /Interrupted: sweep (cli-sweep-sweep-\S+) and its trials stopped/.exec(stdout)?.[1];
    expect(sweepId, stdout).toBeDefined();
    expect(spawnSync('pgrep', ['-f', join(home, 'temporal.db')]).status).toBe(1);
    const shown = JSON.parse(tuneline(home, 'sweep', 'status', sweepId!, '--json').stdout);
    expect(shown.status).toBe('TERMINATED');
  });

  it('a run against a bad dataset exits 1 with the reason', () => {
    const home = tempDir();
    const dir = tempDir();
    const config = writePipeline(dir, { name: 'cli-bad', data: { path: 'missing.jsonl' } });
    const { code, stderr } = tuneline(home, 'run', '--config', config);
    expect(code).toBe(1);
    expect(stderr).toMatch(/Run failed: data file not found: .*missing\.jsonl\. Check data\.path/);
  });
});

/** Lines of a run's output other than the step lines (`  + source ...`, `  x ingest ...`). */
const messageLines = (out: string) =>
  out
    .split('\n')
    .filter((line) => line.trim() !== '')
    .filter((line) => !/^ {2}[ >+=x] \S/.test(line));

describe('a user error ends tuneline run with its one message, attempted once', () => {
  const home = tempDir();
  let connection: Connection;
  let client: Client;
  beforeAll(async () => {
    // One shared server for both runs, so their histories can be read after the runs end.
    expect(tuneline(home, 'temporal', 'start').code).toBe(0);
    connection = await Connection.connect({ address: readServerRecord(home)!.address });
    client = new Client({ connection, namespace: 'default' });
  });
  afterAll(async () => {
    await connection?.close();
    tuneline(home, 'temporal', 'stop');
  });

  /** Runs the pipeline on a data file with these contents; the output and the attempts of each activity. */
  async function runOn(name: string, file: string, contents: string) {
    const dir = tempDir();
    writeFileSync(join(dir, file), contents);
    const config = writePipeline(dir, { name, data: { path: file, columns: { question: 'question', answer: 'answer' } } });
    const { code, stdout, stderr } = tuneline(home, 'run', '--config', config);
    const runId = /^Run (\S+)/m.exec(stdout)?.[1];
    expect(runId, stdout + stderr).toBeDefined();
    const logFile = /^Worker logs: (\S+)$/m.exec(stdout)?.[1];
    return { code, stdout, stderr, logFile, attempts: await activityAttempts(client.workflow.getHandle(runId!)) };
  }

  function expectOneClearMessage(out: { code: number | null; stdout: string; stderr: string; logFile?: string }, message: string) {
    expect(out.code, out.stderr).toBe(1);
    expect(out.stderr).toContain(`Run failed: ${message}`);
    const lines = messageLines(out.stdout + out.stderr);
    expect(lines.length, lines.join('\n')).toBeLessThan(8); // Temporal, Worker logs, Run, Run failed
    expect(out.stdout + out.stderr).not.toMatch(/^\s+at |WARN|Activity task failed/m);
    // The worker's own account, stack and all, is in its log file under the state folder.
    expect(out.logFile).toMatch(new RegExp(`^${home}/logs/worker-\\d{8}-\\d{6}-\\d+\\.log$`));
    expect(readFileSync(out.logFile!, 'utf8')).toContain(message.slice(0, 30));
  }

  it('a CSV with an unclosed quote: the file, the line and the fix', async () => {
    const rows = Array.from({ length: 15 }, (_, i) => `How do I reset model ${i}?,Hold the button for ${i} seconds.`);
    const out = await runOn(
      'cli-bad-csv',
      'data.csv',
      ['question,answer', ...rows, '"How do I pair it?,Open the app.', 'q,a', ''].join('\n'),
    );
    expectOneClearMessage(
      out,
      'data.csv line 17: unclosed quote (a field starts with " but never ends). ' +
        'Fix the quoting in the file, or export it again as CSV with quotes escaped by doubling them.',
    );
    const ingest = Object.keys(out.attempts).find((type) => /ingest/i.test(type));
    expect(ingest, JSON.stringify(out.attempts)).toBeDefined();
    expect(out.attempts).toMatchObject({ [ingest!]: 1 });
    expect(Math.max(...Object.values(out.attempts))).toBe(1); // nothing was retried
  });

  it('an empty data file', async () => {
    const out = await runOn('cli-empty', 'empty.jsonl', '');
    expectOneClearMessage(out, 'empty.jsonl has no rows: the file is empty.');
    expect(Object.entries(out.attempts).filter(([type]) => /ingest/i.test(type))).toEqual([[expect.any(String), 1]]);
    expect(Math.max(...Object.values(out.attempts))).toBe(1);
  });
});

describe('an embedded server left by a run that was killed hard', () => {
  const holder = join(projectRoot, 'test', 'integration', 'session-holder.ts');
  const home = tempDir();
  const dbFile = join(home, 'temporal.db');
  const serversOnDb = () =>
    spawnSync('pgrep', ['-f', `server start-dev .*${dbFile}`], { encoding: 'utf8' })
      .stdout.trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  let leftPid: number | undefined;
  afterAll(() => {
    if (leftPid) spawnSync('kill', ['-9', String(leftPid)]);
  });

  /** Starts a session holder on `home`; resolves once it says `ready ADDRESS`, or with its exit. */
  function holdSession() {
    const child = spawn(process.execPath, ['--import', 'tsx', holder], { ...inHome(home), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
    const ready = new Promise<{ address?: string; code?: number | null; stderr: string }>((resolve) => {
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk;
        const address = /^ready (\S+)$/m.exec(stdout)?.[1];
        if (address) resolve({ address, stderr });
      });
      child.on('exit', (code) => resolve({ code, stderr }));
    });
    return { child, ready };
  }

  it('is adopted by the next session (same server, never a second one) and stopped by it', async () => {
    const first = holdSession();
    const { address } = await first.ready;
    expect(address, (await first.ready).stderr).toBeDefined();
    const record = readServerRecord(home)!;
    leftPid = record.pid;
    expect(record).toMatchObject({ address, dbFile, longLived: false, ownerPid: first.child.pid });
    await killAndWait(first.child, 'SIGKILL');
    expect(serversOnDb()).toEqual([record.pid]); // the server outlived its owner
    expect(tuneline(home, 'temporal', 'status').stdout).toMatch(
      /embedded, left by a tuneline process \(pid \d+\) that ended without stopping it/,
    );

    const lines: string[] = [];
    const previousHome = process.env.TUNELINE_HOME;
    const previousAddress = process.env.TEMPORAL_ADDRESS;
    process.env.TUNELINE_HOME = home;
    process.env.TEMPORAL_ADDRESS = '';
    const session = await openSession({ log: (line) => lines.push(line) }).finally(() => {
      process.env.TUNELINE_HOME = previousHome;
      process.env.TEMPORAL_ADDRESS = previousAddress;
    });
    try {
      expect(lines[0]).toBe(
        `Found a Temporal dev server left by an earlier run (pid ${record.pid}) on ${dbFile}; using it; this process now stops it at the end.`,
      );
      expect(session.target.address).toBe(address);
      expect(readServerRecord(home)).toMatchObject({ pid: record.pid, ownerPid: process.pid });
      expect(serversOnDb()).toEqual([record.pid]);
      await session.client.workflowService.getSystemInfo({}); // it answers
      expect(tuneline(home, 'temporal', 'status').stdout).toContain(
        `(pid ${record.pid}, embedded, owned by the tuneline process with pid ${process.pid}`,
      );

      // A second run on the same folder while this one holds the server: refused, no second server.
      const second = holdSession();
      const refused = await second.ready;
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain(`another run (pid ${process.pid}) is using the embedded Temporal dev server on ${dbFile}`);
      expect(refused.stderr).toContain('`tuneline temporal start`');
      expect(serversOnDb()).toEqual([record.pid]);
    } finally {
      await session.close();
    }
    expect(serversOnDb()).toEqual([]);
    expect(existsSync(join(home, 'server.json'))).toBe(false);
    leftPid = undefined;
  });

  it('a record whose server is gone is removed and a fresh server started', async () => {
    writeFileSync(
      join(home, 'server.json'),
      JSON.stringify({ pid: 999_999, address: '127.0.0.1:1', uiUrl: '', dbFile, longLived: false, ownerPid: 999_998 }),
    );
    const fresh = holdSession();
    const { address, stderr } = await fresh.ready;
    expect(address, stderr).toBeDefined();
    expect(address).not.toBe('127.0.0.1:1');
    expect(readServerRecord(home)).toMatchObject({ address, ownerPid: fresh.child.pid });
    leftPid = readServerRecord(home)!.pid;
    await killAndWait(fresh.child, 'SIGTERM'); // no handler: as hard as SIGKILL for the server's sake
    expect(tuneline(home, 'temporal', 'stop').stdout).toMatch(/^Stopped \(pid \d+\)\./);
    expect(serversOnDb()).toEqual([]);
    leftPid = undefined;
  });
});
