import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../cli/config';
import { renderConfigDocs } from '../../schemas/config-docs';
import { emittedSchemas, renderJsonSchema } from '../../schemas/json-schemas';
import { checkConfig } from '../../schemas/validate';
import { tempDir } from '../integration/harness';

const root = join(import.meta.dirname, '..', '..');

/** Every YAML the project ships: the default pipeline and the recipes. */
function shippedYamls(): string[] {
  const recipes = readdirSync(join(root, 'recipes'))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => join(root, 'recipes', f));
  return [join(root, 'temporal.yaml'), ...recipes];
}

describe('pipeline config', () => {
  it.each(shippedYamls())('shipped file %s is valid', (path) => {
    const loaded = loadConfigFile(path);
    expect(loaded.problems).toEqual([]);
    // Each shipped file opens with comments that say how to run it.
    expect(readFileSync(path, 'utf8')).toMatch(/^(#.*\n)*# .*Run it with `/);
  });

  it('reports every problem at once with its path, what was expected and what was found', () => {
    const check = checkConfig({
      name: 'Bad Name',
      data: { sample: { rows: 100 }, colums: {} },
      split: { train: 0.9 },
      training: { strategy: 'qlora', batchSize: 'eight', lora: { rank: 0 } },
      clean: { dropAnswersMatching: ['(unclosed'] },
      schedules: [{ id: 'weekly' }],
    });
    expect(check.ok).toBe(false);
    const problems = check.ok ? [] : check.problems;
    expect(problems.map((p) => p.path)).toEqual([
      'name',
      'data',
      'clean.dropAnswersMatching[0]',
      'split',
      'training.strategy',
      'training.lora.rank',
      'training.batchSize',
      'schedules[0]',
    ]);
    const byPath = Object.fromEntries(problems.map((p) => [p.path, p.message]));
    expect(byPath['training.strategy']).toBe('expected one of "lora", "full", found string "qlora"');
    expect(byPath['training.batchSize']).toBe('expected number, found string "eight"');
    expect(byPath.data).toBe('unknown key "colums" (check the spelling)');
    expect(byPath.split).toMatch(/must add up to 1/);
  });

  it('needs exactly one data source', () => {
    const check = checkConfig({ name: 'x', data: {} });
    expect(check.ok ? [] : check.problems.map((p) => p.message)).toEqual([expect.stringMatching(/exactly one of `data.path`/)]);
  });

  it('reports YAML syntax errors with their line', () => {
    const dir = tempDir();
    const path = join(dir, 'temporal.yaml');
    writeFileSync(path, 'name: x\ndata:\n  sample: {rows: 10\n');
    expect(loadConfigFile(path).problems[0]!.path).toMatch(/^line \d+/);
  });

  it.each(Object.keys(emittedSchemas))('committed JSON Schema %s is up to date (npm run schema)', (file) => {
    const committed = readFileSync(join(root, 'schemas', 'json', file), 'utf8');
    expect(committed).toBe(renderJsonSchema(emittedSchemas[file]!));
  });

  it('committed config reference docs/config.md is up to date (npm run schema)', () => {
    expect(readFileSync(join(root, 'docs', 'config.md'), 'utf8')).toBe(renderConfigDocs());
  });
});
