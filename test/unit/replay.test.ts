/**
 * Replays recorded workflow histories against the current workflow code, so a change that would
 * break running or past runs (non-determinism) fails here, not in production. When a change is
 * meant to alter histories, guard it with `patched()` and record a new fixture beside the old one.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';

const historiesDir = join(import.meta.dirname, '..', 'fixtures', 'histories');
const workflowsPath = join(import.meta.dirname, '..', '..', 'workflows', 'index.ts');

describe('workflow history replay', () => {
  const files = readdirSync(historiesDir).filter((f) => f.endsWith('.json'));

  it('has recorded histories to replay', () => {
    expect(files).toEqual(expect.arrayContaining(['data-stage.json', 'bad-config.json', 'full-run.json']));
  });

  it.each(files)('replays %s without a determinism error', { timeout: 60_000 }, async (file) => {
    const history = JSON.parse(readFileSync(join(historiesDir, file), 'utf8'));
    await expect(Worker.runReplayHistory({ workflowsPath }, history, file.replace('.json', ''))).resolves.toBeUndefined();
  });
});
