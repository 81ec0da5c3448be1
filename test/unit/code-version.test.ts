/**
 * Per-step code versions: a step's cache key covers the code that step runs (its module and what it
 * imports, the engine command for engine steps), so editing the report re-runs the report and
 * nothing else, while editing the training code re-trains.
 */
import { appendFileSync, cpSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { computeCodeVersion, engineClosure, tsClosure, type EngineCommand } from '../../activities/code-version';
import { projectRoot, tempDir } from '../integration/harness';

/** The steps whose cache matters most (minutes each), by the module that defines them. */
const STEPS: Record<string, [string, EngineCommand | undefined]> = {
  train: ['activities/train.ts', 'train'],
  export: ['activities/export.ts', 'export'],
  'answers-tuned': ['activities/evaluation/answers.ts', undefined],
  forgetting: ['activities/evaluation/forgetting.ts', 'perplexity'],
  'run-report': ['activities/report/run-report.ts', undefined],
  clean: ['activities/data-stage.ts', undefined],
};

let root: string;
const versions = () =>
  Object.fromEntries(Object.entries(STEPS).map(([step, [entry, engine]]) => [step, computeCodeVersion(entry, engine, root)]));
const edit = (file: string) => appendFileSync(join(root, file), file.endsWith('.py') ? '\n# edited\n' : '\n// edited\n');
/** The steps whose version changed between two snapshots. */
const changed = (before: Record<string, string>, after: Record<string, string>) =>
  Object.keys(before).filter((s) => before[s] !== after[s]);

beforeEach(() => {
  root = tempDir('tuneline-code-');
  for (const folder of ['activities', 'schemas', 'serve', 'lib', 'sample-data', 'engine'])
    cpSync(join(projectRoot, folder), join(root, folder), { recursive: true });
});

describe('per-step code versions', () => {
  it('editing the report reuses train, export and answers, and re-runs only the report', () => {
    const before = versions();
    edit('activities/report/run-report.ts');
    expect(changed(before, versions())).toEqual(['run-report']);
  });

  it('editing the training code, TypeScript or Python, re-trains and reuses export and answers keys', () => {
    const before = versions();
    edit('activities/train.ts');
    const afterTs = versions();
    expect(changed(before, afterTs)).toEqual(['train']);
    edit('engine/train.py');
    expect(changed(afterTs, versions())).toEqual(['train']);
  });

  it('follows imports: the generator re-runs answers, the engine library its commands, the data code the data steps', () => {
    const before = versions();
    edit('serve/generation.ts');
    const afterServe = versions();
    expect(changed(before, afterServe)).toEqual(['answers-tuned']);
    edit('engine/models.py'); // loads every base model: training, export and perplexity use it
    const afterModels = versions();
    expect(changed(afterServe, afterModels)).toEqual(['train', 'export', 'forgetting']);
    edit('engine/requirements.txt');
    expect(changed(afterModels, versions())).toEqual(['train', 'export', 'forgetting']);
    edit('activities/data/clean.ts');
    expect(changed(afterModels, versions())).toContain('clean');
  });

  it('ignores type-only imports, which erase at run time', () => {
    const files = tsClosure('activities/train.ts', projectRoot).files.map((f) => f.slice(projectRoot.length + 1));
    expect(files).toContain('activities/engine-process.ts');
    // train.ts imports TrainSpec and the step statistics as types only.
    expect(files).not.toContain('schemas/train-spec.ts');
    expect(files).not.toContain('schemas/steps.ts');
    expect(engineClosure('train', projectRoot).map((f) => f.slice(projectRoot.length + 1))).not.toContain('engine/score.py');
  });
});
