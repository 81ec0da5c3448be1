import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliPath, projectRoot, tempDir, writePipeline } from './harness';

/** Its own state folder and no configured cluster: the embedded server path. */
const inHome = (home: string) => ({ cwd: projectRoot, env: { ...process.env, TEMPORAL_ADDRESS: '', TUNELINE_HOME: home } });

/** The real `tuneline` command. */
function tuneline(home: string, ...args: string[]) {
  const out = spawnSync(process.execPath, [cliPath, ...args], { ...inHome(home), encoding: 'utf8', timeout: 180_000 });
  return { code: out.status, stdout: out.stdout, stderr: out.stderr };
}

/**
 * Starts `tuneline run ARGS` in its own process group and, once stdout matches `when`, signals the
 * whole group with SIGINT, as a terminal's Ctrl-C does. Resolves with the exit code and output.
 */
async function interruptRun(home: string, args: string[], when: RegExp) {
  const child = spawn(process.execPath, [cliPath, 'run', ...args], { ...inHome(home), detached: true });
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
    expect(out).toMatchObject({ status: 'completed', result: { status: 'data-ready', pipeline: 'cli-run' } });
    expect(out.workflowId).toMatch(/^cli-run-/);
    expect(existsSync(join(out.result.runFolder, 'train.arrow'))).toBe(true);
    expect(stderr).toMatch(/Web UI http:\/\/127\.0\.0\.1:\d+/);
    // The server it started is gone: no process holds its database any more.
    expect(spawnSync('pgrep', ['-f', join(home, 'temporal.db')]).status).toBe(1);
    expect(tuneline(home, 'server', 'status').code).toBe(1);
  });

  it('server start, status and stop manage a long-lived server that status RUN_ID can read runs from', () => {
    const home = tempDir();
    const config = writePipeline(tempDir(), { name: 'cli-server', data: { sample: { rows: 300, seed: 4 } } });
    expect(tuneline(home, 'server', 'start').stdout).toMatch(/^Temporal 127\.0\.0\.1:\d+, Web UI/);
    try {
      const status = tuneline(home, 'server', 'status');
      expect(status.code).toBe(0);
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
      expect(tuneline(home, 'server', 'stop').stdout).toContain('Stopped.');
    }
    expect(tuneline(home, 'server', 'status').code).toBe(1);
  });

  it('Ctrl-C ends the run (terminated, exit 130) and the same command goes on from the cache', async () => {
    const home = tempDir();
    const config = writePipeline(tempDir(), { name: 'cli-interrupt', data: { sample: { rows: 10000, seed: 5 } } });
    const { code, stdout, stderr } = await interruptRun(home, ['--config', config, '--until', 'data'], /\+ source/);
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
    const { code, stdout } = await interruptRun(home, ['--config', config, '--no-workers'], /^Run /m);
    expect(code).toBe(130);
    const runId = /Detached: run (cli-detach-\S+) stays open/.exec(stdout)?.[1];
    expect(runId, stdout).toBeDefined();
    expect(spawnSync('pgrep', ['-f', join(home, 'temporal.db')]).status).toBe(1);
    expect(JSON.parse(tuneline(home, 'status', runId!, '--json').stdout).status).toBe('RUNNING');
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
