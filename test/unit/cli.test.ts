import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliPath, projectRoot, tempDir } from '../integration/harness';

function tuneline(...args: string[]) {
  const out = spawnSync(process.execPath, [cliPath, ...args], {
    cwd: projectRoot,
    encoding: 'utf8',
    env: { ...process.env, TEMPORAL_ADDRESS: '' },
  });
  return { code: out.status, stdout: out.stdout, stderr: out.stderr };
}

describe('tuneline CLI', () => {
  const commands = ['', 'validate', 'run', 'status', 'worker', 'server', 'server start', 'server stop', 'server status', 'sample-data'];
  it.each(commands)('`tuneline %s --help` documents the command', (command) => {
    const { code, stdout } = tuneline(...command.split(' ').filter(Boolean), '--help');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: tuneline/);
    expect(stdout.length).toBeGreaterThan(80);
  });

  it('validate accepts the shipped pipeline', () => {
    const { code, stdout } = tuneline('validate');
    expect(code).toBe(0);
    expect(stdout).toMatch(/is valid \(pipeline "electronics-support"\)/);
  });

  it('validate lists every problem and exits 2', () => {
    const path = join(tempDir(), 'temporal.yaml');
    writeFileSync(path, 'name: Bad\ndata:\n  sample: {rows: 5}\ntraining:\n  strategy: qlora\n');
    const { code, stderr } = tuneline('validate', '--config', path);
    expect(code).toBe(2);
    expect(stderr).toContain('has 3 problems');
    expect(stderr).toContain('- name: lower-case letters');
    expect(stderr).toContain('- data.sample.rows: Too small');
    expect(stderr).toContain('- training.strategy: expected one of "lora", "full", found string "qlora"');
    expect(stderr).not.toMatch(/at .*\.ts:\d+/);
  });

  it('a missing pipeline file is a user error, not a stack trace', () => {
    const { code, stderr } = tuneline('run', '--config', '/nonexistent/temporal.yaml');
    expect(code).toBe(2);
    expect(stderr).toMatch(/cannot read .*temporal.yaml: no such file/);
  });

  it('sample-data writes the same file for the same seed', () => {
    const dir = tempDir();
    expect(tuneline('sample-data', '-o', join(dir, 'a.jsonl'), '-n', '200', '-s', '3').code).toBe(0);
    expect(tuneline('sample-data', '-o', join(dir, 'b.jsonl'), '-n', '200', '-s', '3').code).toBe(0);
    const read = (f: string) => spawnSync('sha256sum', [join(dir, f)], { encoding: 'utf8' }).stdout.split(' ')[0];
    expect(read('a.jsonl')).toBe(read('b.jsonl'));
  });
});
