import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactPath } from '../../activities/artifacts';
import { readRows } from '../../activities/data/arrow-io';
import { queryProgress, startPipeline } from '../../cli/client';
import { loadConfigFile } from '../../cli/config';
import { SearchAttributes } from '../../workflows/definitions';
import {
  activityAttempts,
  killAndWait,
  projectRoot,
  spawnWorker,
  startTestServer,
  tempDir,
  writePipeline,
  type TestServer,
} from './harness';

/** These tests are about the data stage; training has its own. */
const DATA_ONLY = { stopAfter: 'data' } as const;

let env: TestServer;
let worker: ReturnType<typeof spawnWorker>;

beforeAll(async () => {
  env = await startTestServer();
  worker = spawnWorker('cpu', env.server.address);
});

afterAll(async () => {
  if (worker) await killAndWait(worker, 'SIGTERM');
  await env?.close();
});

const samplePipeline = (dir: string, rows = 10_000) =>
  writePipeline(dir, {
    name: 'it-sample',
    data: { sample: { rows, seed: 42 }, columns: { id: 'id', category: 'category', product: 'product', fact: 'fact' } },
  });

describe('finetunePipeline on a real dev server', () => {
  const dir = tempDir();
  const path = samplePipeline(dir);

  it('runs the data stage on the sample data and accounts for every row', async () => {
    const handle = await startPipeline(env.client, loadConfigFile(path), DATA_ONLY);
    const result = await handle.result();
    expect(result.status).toBe('data-ready');
    expect(result.steps.map((s) => s.step)).toEqual(['source', 'ingest', 'clean', 'dedup', 'split', 'report']);
    expect(result.steps.every((s) => !s.reused)).toBe(true);

    const report = JSON.parse(readFileSync(artifactPath(result.report.json), 'utf8'));
    expect(report.accounting).toMatchObject({ sourceRows: 10_000, balanced: true });
    expect(report.accounting.quarantined).toBeGreaterThan(0);
    expect(report.accounting.removed).toBeGreaterThan(0);
    expect(readFileSync(artifactPath(result.report.markdown), 'utf8')).toContain('| stage | rows in | rows out |');

    const train = await readRows(result.splits.train);
    const test = await readRows(result.splits.test);
    expect(train.length).toBe(result.splits.train.rows);
    const trainGroups = new Set(train.map((r) => r.groupId));
    expect(test.some((r) => trainGroups.has(r.groupId))).toBe(false);

    const progress = await queryProgress(handle);
    expect(progress?.stage).toBe('done');
    expect(progress?.steps.every((s) => s.status === 'done')).toBe(true);
    const description = await handle.describe();
    expect(description.typedSearchAttributes.get(SearchAttributes.stage)).toBe('done');
    expect(description.typedSearchAttributes.get(SearchAttributes.pipeline)).toBe('it-sample');
  });

  it('re-runs no step when the config is unchanged, and every step with noCache', async () => {
    const first = await (await startPipeline(env.client, loadConfigFile(path), DATA_ONLY)).result();
    expect(first.steps.filter((s) => !s.reused)).toEqual([]);
    const forced = await (await startPipeline(env.client, loadConfigFile(path), { ...DATA_ONLY, noCache: true })).result();
    expect(forced.steps.filter((s) => s.reused)).toEqual([]);
    expect(forced.splits).toEqual(first.splits);
  });

  it('re-runs only the steps downstream of a changed setting', async () => {
    const changed = loadConfigFile(path);
    (changed.raw as { split: unknown }).split = { seed: 7 };
    const result = await (await startPipeline(env.client, changed, DATA_ONLY)).result();
    expect(result.steps.filter((s) => !s.reused).map((s) => s.step)).toEqual(['split', 'report']);
  });
});

describe('user errors fail fast and are not retried', () => {
  it('a bad config fails the run with every problem in the failure message', async () => {
    const dir = tempDir();
    const loaded = loadConfigFile(samplePipeline(dir));
    Object.assign(loaded.raw as object, { split: { train: 2 }, training: { strategy: 'qlora' } });
    const handle = await startPipeline(env.client, loaded, DATA_ONLY);
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const message = (error as WorkflowFailedError).cause?.message ?? '';
    expect(message).toContain('split.train');
    expect(message).toContain('training.strategy: expected one of "lora", "full", found string "qlora"');
    expect(await activityAttempts(handle)).toEqual({ validatePipelineConfig: 1 });
  });

  it('a dataset with too many bad rows fails with how many and why, after one attempt', async () => {
    const dir = tempDir();
    const lines = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify(i % 2 === 0 ? { question: `Question ${i}?`, answer: `Answer ${i}.` } : { question: `Question ${i}?`, answer: i }),
    );
    writeFileSync(join(dir, 'bad.jsonl'), lines.join('\n'));
    const loaded = loadConfigFile(writePipeline(dir, { name: 'it-bad-rows', data: { path: 'bad.jsonl' } }));
    const handle = await startPipeline(env.client, loaded, DATA_ONLY);
    const error = (await handle.result().catch((e: unknown) => e)) as WorkflowFailedError;
    expect(error.cause?.message).toMatch(/20 of 40 rows \(50\.0%\) are invalid.*20 wrong-type.*answer: expected text, found a number/);
    expect(await activityAttempts(handle)).toMatchObject({ ingestData: 1 });
    expect((await queryProgress(handle))?.stage).toBe('failed');
  });
});

// The real data set lives beside the repository (research use only, never copied into it).
const amazonData = resolve(projectRoot, '..', 'shared', 'datasets', 'amazon-qa-appliances', 'data.jsonl');

describe('the shipped Amazon appliances recipe', () => {
  it.skipIf(!existsSync(amazonData))(
    'takes real customer answers through every data step cleanly (skipped where ../shared/datasets is absent)',
    async () => {
      const loaded = loadConfigFile(join(projectRoot, 'recipes', 'amazon-appliances.yaml'));
      const dir = tempDir();
      Object.assign(loaded.raw as object, { storage: { artifacts: join(dir, 'artifacts'), runs: join(dir, 'runs') } });
      const result = await (await startPipeline(env.client, loaded, DATA_ONLY)).result();
      const report = JSON.parse(readFileSync(artifactPath(result.report.json), 'utf8'));
      expect(report.accounting).toMatchObject({ sourceRows: 8866, balanced: true });
      expect(report.accounting.quarantined / 8866).toBeLessThan(0.05);
      const cleaned = report.stages.find((s: { stage: string }) => s.stage === 'clean');
      expect(cleaned.details['changedByRule.removeUrls']).toBeGreaterThan(0);
      expect(Object.keys(cleaned.details).some((k) => k.startsWith('removed.'))).toBe(true);
      const rows = [...(await readRows(result.splits.train)), ...(await readRows(result.splits.test))];
      expect(rows.some((r) => /https?:\/\//.test(r.answer))).toBe(false);
      // Stratified by question type: both types in every split.
      for (const split of ['train', 'validation', 'test']) {
        expect(report.splitsByCategory['yes/no'][split]).toBeGreaterThan(0);
        expect(report.splitsByCategory['open-ended'][split]).toBeGreaterThan(0);
      }
    },
  );
});
