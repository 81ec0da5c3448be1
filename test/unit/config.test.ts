import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stepKey } from '../../activities/steps';
import { engineTraining } from '../../activities/train';
import { loadConfigFile } from '../../cli/config';
import { PipelineConfig } from '../../schemas/config';
import { renderConfigDocs } from '../../schemas/config-docs';
import { emittedSchemas, renderEngineErrors, renderJsonSchema } from '../../schemas/json-schemas';
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

  it('checks gates against what the evaluation measures', () => {
    const paths = (raw: object) => {
      const check = checkConfig({ name: 'x', data: { sample: { rows: 10 } }, ...raw });
      return check.ok ? [] : check.problems.map((p) => `${p.path}: ${p.message}`);
    };
    expect(
      paths({
        gates: [{ metric: 'rougeL' }, { metric: 'bleu', min: 10, relativeTo: 'base' }, { metric: 'perplexity', relativeTo: 'retrieval' }],
      }),
    ).toEqual([
      'gates[0]: a gate needs `min`, `max` or `relativeTo`',
      'gates[1]: a gate is absolute (`min`/`max`) or relative (`relativeTo` with `margin`), not both; write two gates',
      'gates[2].relativeTo: the forgetting check measures the base model itself, not retrieval; use `relativeTo: base`',
    ]);
    expect(
      paths({
        evaluation: { baselines: ['base'], forgettingCheck: false },
        gates: [
          { metric: 'rougeL', relativeTo: 'retrieval' },
          { metric: 'perplexity', max: 30 },
        ],
      }),
    ).toEqual([
      'gates[0].relativeTo: the retrieval baseline is not evaluated; add it to evaluation.baselines or drop this gate',
      'gates[1].metric: perplexity is measured by the forgetting check; set evaluation.forgettingCheck to true or drop this gate',
    ]);
  });

  it('catches meaningless settings before any data is read: bounds, LoRA targets and layers, a gate review cannot decide', () => {
    const problems = (raw: object) => {
      const check = checkConfig({ name: 'x', data: { sample: { rows: 10 } }, ...raw });
      return check.ok ? [] : check.problems.map((p) => `${p.path}: ${p.message}`);
    };
    expect(problems({ training: { learningRate: 5, weightDecay: 2, lora: { targetModules: [], layers: [] } } })).toEqual([
      'training.lora.targetModules: list at least one module name, or `all-linear`, found a list',
      'training.lora.layers: an empty list gives no layer an adapter; leave it out for all layers, found a list',
      'training.learningRate: at most 0.1; fine-tuning rates are usually 1e-5 to 3e-3, found number 5',
      'training.weightDecay: Too big: expected number to be <=1, found number 2',
    ]);
    expect(problems({ training: { lora: { targetModules: ['all-linear', 'q_proj'] } } })).toEqual([
      'training.lora.targetModules: `all-linear` must be the only entry (it already covers every linear layer)',
    ]);
    expect(problems({ review: { enabled: false }, gates: [{ metric: 'satisfaction', min: 0.9 }] })).toEqual([
      'gates[0].metric: satisfaction is decided by human review, which review.enabled turns off; enable review or drop this gate',
    ]);
    const knowledge = [{ path: 'faq.csv' }];
    expect(problems({ retrieval: { knowledge }, evaluation: { baselines: ['base'] }, training: { grounding: { k: 0 } } })).toEqual([
      'retrieval.knowledge: nothing retrieves, so these files would have no effect; set training.grounding.k above 0, add the ' +
        'retrieval or base-grounded baseline to evaluation.baselines, or remove retrieval.knowledge',
    ]);
    expect(
      problems({ retrieval: { knowledge }, evaluation: { baselines: ['base', 'retrieval'] }, training: { grounding: { k: 0 } } }),
    ).toEqual([]);
    expect(problems({ training: { keepCheckpoints: 0, maxSteps: 12 } })).toEqual([
      'training.keepCheckpoints: Too small: expected number to be >=1, found number 0',
    ]);
  });

  it('takes export.quantize (none by default) with quality limits, and refuses a precision or limit it has not', () => {
    const check = (raw: object) => checkConfig({ name: 'x', data: { sample: { rows: 10 } }, ...raw });
    const defaults = check({});
    expect(defaults.ok && defaults.config.export).toEqual({ quantize: 'none', minTokenAgreement: 0, maxPerplexityIncrease: 0.1 });
    const int8 = check({ export: { quantize: 'int8', minTokenAgreement: 0.95 } });
    expect(int8.ok && int8.config.export).toEqual({ quantize: 'int8', minTokenAgreement: 0.95, maxPerplexityIncrease: 0.1 });
    const wrong = check({ export: { quantize: 'fp16', minTokenAgreement: 1.5, maxPerplexityIncrease: -0.1, bits: 4 } });
    expect(wrong.ok ? [] : wrong.problems.map((p) => p.path).sort()).toEqual([
      'export',
      'export.maxPerplexityIncrease',
      'export.minTokenAgreement',
      'export.quantize',
    ]);
  });

  it('takes an S3 bucket for artifacts, and says what a bucket cannot do yet', () => {
    const problems = (raw: object) => {
      const check = checkConfig({ name: 'x', data: { sample: { rows: 10 } }, ...raw });
      return check.ok ? [] : check.problems.map((p) => `${p.path}: ${p.message}`);
    };
    expect(problems({ storage: { artifacts: 's3://team-models/tuneline' }, promotion: 'manual' })).toEqual([]);
    expect(problems({ storage: { artifacts: 's3://Bad_Bucket' }, promotion: 'manual' })).toEqual([
      expect.stringMatching(/^storage\.artifacts: an S3 location is s3:\/\/bucket or s3:\/\/bucket\/prefix/),
    ]);
    expect(
      problems({
        storage: { artifacts: 's3://team-models' },
        schedules: [{ id: 'nightly', cron: '0 2 * * *' }],
      }),
    ).toEqual([
      expect.stringMatching(
        /^promotion: with storage.artifacts in a bucket the model registry is not available yet; set promotion: manual/,
      ),
      expect.stringMatching(/^schedules: scheduled runs need the model registry/),
    ]);
  });

  it('takes training.distributed.processes (1 by default), and keeps it out of the train step key: one process gets the same result', () => {
    const parse = (training: object) => PipelineConfig.parse({ name: 'x', data: { sample: { rows: 10 } }, training });
    expect(parse({}).training.distributed.processes).toBe(1);
    const one = engineTraining(parse({ maxSteps: 12 }).training);
    const two = engineTraining(parse({ maxSteps: 12, distributed: { processes: 2 } }).training);
    expect(two.processes).toBe(2);
    const key = (training: object) => stepKey({ step: 'train', config: { training }, inputs: [], code: 'c' });
    expect(key(two.training)).toBe(key(one.training));
    expect(key(engineTraining(parse({ maxSteps: 13 }).training).training)).not.toBe(key(one.training));
    const problems = checkConfig({ name: 'x', data: { sample: { rows: 10 } }, training: { distributed: { processes: 0 } } });
    expect(problems.ok ? [] : problems.problems.map((p) => p.path)).toEqual(['training.distributed.processes']);
  });

  it('names feedback exports to train on, each file checked like a knowledge file', () => {
    const parsed = PipelineConfig.parse({ name: 'x', data: { sample: { rows: 10 }, feedback: [{ path: 'feedback.jsonl' }] } });
    // No columns: the file inherits data.columns (as far as it has them) when the data stage reads it.
    expect(parsed.data.feedback).toEqual([{ path: 'feedback.jsonl', format: 'auto' }]);
    expect(PipelineConfig.parse({ name: 'x', data: { sample: { rows: 10 } } }).data.feedback).toEqual([]);
    const check = checkConfig({
      name: 'x',
      data: { sample: { rows: 10 }, feedback: [{ path: 'f.jsonl', fromat: 'csv' }, { path: 'g.xlsx', format: 'xlsx' }, {}] },
    });
    expect(check.ok ? [] : check.problems.map((p) => `${p.path}: ${p.message}`)).toEqual([
      'data.feedback[0]: unknown key "fromat" (check the spelling)',
      'data.feedback[1].format: expected one of "auto", "csv", "jsonl", "parquet", "arrow", found string "xlsx"',
      'data.feedback[2].path: expected string, found nothing',
    ]);
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

  it('committed engine error contract schemas/json/engine-errors.json is up to date (npm run schema)', () => {
    expect(readFileSync(join(root, 'schemas', 'json', 'engine-errors.json'), 'utf8')).toBe(renderEngineErrors());
  });

  it('committed config reference docs/config.md is up to date (npm run schema)', () => {
    expect(readFileSync(join(root, 'docs', 'config.md'), 'utf8')).toBe(renderConfigDocs());
  });
});
