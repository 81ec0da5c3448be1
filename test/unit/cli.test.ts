import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
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

/** The names listed under a help text's "Commands:" heading. */
function listedCommands(help: string): string[] {
  const section = help.split(/^Commands:$/m)[1] ?? '';
  return [...section.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1]!);
}

describe('tuneline CLI', () => {
  it('the top-level help lists every command, one file per command in cli/commands/', () => {
    const { code, stdout } = tuneline('--help');
    expect(code).toBe(0);
    const files = readdirSync(join(projectRoot, 'cli', 'commands')).map((f) => f.replace(/\.ts$/, ''));
    expect(listedCommands(stdout).sort()).toEqual([...files, 'help'].sort());
    expect(files).toEqual(expect.arrayContaining(['validate', 'run', 'status', 'worker', 'temporal', 'sample-data']));
    expect(files).not.toContain('server'); // `serve` is kept for the chat server; the dev server is `temporal`
  });

  it.each([
    ['validate', ['--config', '--json']],
    ['run', ['--config', '--no-cache', '--json', '--no-workers', '--until']],
    ['status', ['run-id', '--json']],
    ['worker', ['--queue', '--log-file']],
    ['temporal start', ['--port']],
    ['temporal stop', []],
    ['temporal status', []],
    ['sample-data', ['--output', '--rows', '--seed', '--products']],
  ])('`tuneline %s --help` says what it does and names its options', (command, options) => {
    const { code, stdout } = tuneline(...command.split(' '), '--help');
    expect(code).toBe(0);
    expect(stdout).toMatch(new RegExp(`^Usage: tuneline ${command} `));
    const described = stdout.split('\n')[2]!; // the line after the usage line and a blank one
    expect(described.length).toBeGreaterThan(20);
    for (const option of options) expect(stdout).toMatch(new RegExp(`^ +(-\\w, )?${option}\\b.* [a-z]`, 'm'));
  });

  it('`tuneline temporal --help` lists start, stop and status', () => {
    const { code, stdout } = tuneline('temporal', '--help');
    expect(code).toBe(0);
    expect(listedCommands(stdout)).toEqual(['start', 'stop', 'status', 'help']);
  });

  it(
    'review invite prints a token once with the page link; reviewers lists it without the token; revoke withdraws it',
    { timeout: 120_000 },
    () => {
      const db = join(tempDir(), 'feedback.sqlite');
      const invited = tuneline('review', 'invite', 'ana', '--db', db, '--url', 'http://chat.example:8000/');
      expect(invited.code, invited.stderr).toBe(0);
      const token = /\n {2}(rvw_\S+)\n/.exec(invited.stdout)?.[1];
      expect(token).toMatch(/^rvw_[\w-]{32}$/);
      expect(invited.stdout).toContain(`Review page: http://chat.example:8000/review#token=${token}\n`);
      const listed = tuneline('review', 'reviewers', '--db', db);
      expect(listed.stdout).toMatch(/^REVIEWER +MADE +BY +STATE\nana +\S+ +\S+ +live\n$/);
      expect(listed.stdout).not.toContain(token);
      expect(tuneline('review', 'revoke', 'ana', '--db', db).stdout).toBe('Revoked 1 token(s) of ana.\n');
      expect(tuneline('review', 'reviewers', '--db', db).stdout).toMatch(/\nana +.* revoked \d{4}-/);
      const again = tuneline('review', 'revoke', 'ana', '--db', db);
      expect([again.code, again.stderr]).toEqual([2, 'ana has no live token (tuneline review reviewers lists them)\n']);
    },
  );

  it('a vote with no Temporal server running says so instead of starting an empty one', () => {
    const out = spawnSync(process.execPath, [cliPath, 'review', 'vote', 'some-run', 'q1', 'accept'], {
      cwd: projectRoot,
      encoding: 'utf8',
      env: { ...process.env, TEMPORAL_ADDRESS: '', TUNELINE_HOME: tempDir() },
    });
    expect(out.status).toBe(2);
    expect(out.stderr).toMatch(/^no Temporal server is running: start a run \(tuneline run\)/);
  });

  it('the old `tuneline server` command is gone, without an alias', () => {
    const { code, stderr } = tuneline('server', 'status');
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/unknown command 'server'/);
  });

  it('validate accepts the shipped pipeline', () => {
    const { code, stdout } = tuneline('validate');
    expect(code).toBe(0);
    expect(stdout).toMatch(/is valid \(pipeline "electronics-support"\)/);
  });

  it('validate says a valid file is valid, with no notes when it sets no planned key, and in --json', () => {
    const path = join(tempDir(), 'temporal.yaml');
    writeFileSync(path, 'name: planned\ndata:\n  sample: {rows: 50}\nreview:\n  timeout: 24h\nschedules: []\n');
    const { code, stdout } = tuneline('validate', '--config', path);
    expect(code).toBe(0);
    expect(stdout.trim().split('\n')).toEqual([`${path} is valid (pipeline "planned").`]);
    const json = JSON.parse(tuneline('validate', '--config', path, '--json').stdout);
    expect(json).toMatchObject({ valid: true, problems: [], notes: [] });
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
