import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliPath, projectRoot, tempDir, writePipeline } from './harness';

/** The real `tuneline` command with its own state folder and no configured cluster: the embedded server path. */
function tuneline(home: string, ...args: string[]) {
  const out = spawnSync(process.execPath, [cliPath, ...args], {
    cwd: projectRoot,
    encoding: 'utf8',
    env: { ...process.env, TEMPORAL_ADDRESS: '', TUNELINE_HOME: home },
    timeout: 180_000,
  });
  return { code: out.status, stdout: out.stdout, stderr: out.stderr };
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

  it('a run against a bad dataset exits 1 with the reason', () => {
    const home = tempDir();
    const dir = tempDir();
    const config = writePipeline(dir, { name: 'cli-bad', data: { path: 'missing.jsonl' } });
    const { code, stderr } = tuneline(home, 'run', '--config', config);
    expect(code).toBe(1);
    expect(stderr).toMatch(/Run failed: data file not found: .*missing\.jsonl\. Check data\.path/);
  });
});
