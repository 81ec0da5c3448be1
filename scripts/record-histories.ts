/**
 * Records the workflow histories that `test/unit/replay.test.ts` replays against the current code.
 * Run it when a change to workflow code is meant to alter histories (and guard the change with
 * `patched()` where runs may still be open):
 *
 *   npx tsx scripts/record-histories.ts
 *
 * It starts a Temporal dev server and both workers in this process, builds the engine's tiny random
 * model, and runs: the data stage alone, a bad config, a whole run through the gate and human review to
 * promotion (with a knowledge file), the same run again finding nothing new, and a sweep. Every
 * workflow of each run (the pipeline and its stage children) is written with `historyToJSON` to
 * `test/fixtures/histories/<run>.<workflow>.json`, and `workflow-ids.json` maps each file to its
 * workflow id (a replay needs it). About two minutes on 2 cores.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { startPipeline, startSweep } from '../cli/client';
import { loadConfigFile } from '../cli/config';
import type { ReviewState } from '../schemas/manifests';
import { childWorkflowId, reviewQuery, reviewUpdate } from '../workflows/definitions';
import { buildTinyModel, startInProcessTemporal, tempDir, writePipeline } from '../test/integration/harness';

const root = join(import.meta.dirname, '..');
const out = join(root, 'test', 'fixtures', 'histories');

/** File name → workflow id: a replay needs the id, since the pipeline derives its children's ids from it. */
const index: Record<string, string> = {};

async function save(client: Client, run: string, workflowId: string): Promise<void> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const file = `${run}.${workflowId.includes('/') ? workflowId.split('/').at(-1)! : 'pipeline'}.json`;
  writeFileSync(join(out, file), historyToJSON(history) + '\n');
  index[file] = workflowId;
  console.log(`recorded ${file} (${history.events?.length ?? 0} events)`);
}

const tinyModel = buildTinyModel();
const { client, stop } = await startInProcessTemporal(tempDir('tuneline-record-'));
try {
  mkdirSync(out, { recursive: true });
  for (const file of readdirSync(out)) if (file.endsWith('.json')) rmSync(join(out, file));
  const sample = { sample: { rows: 400, seed: 5 }, columns: { category: 'category', product: 'product', fact: 'fact' } };

  const data = await startPipeline(client, loadConfigFile(writePipeline(tempDir(), { name: 'fixture-data', data: sample })), {
    stopAfter: 'data',
    workflowId: 'fixture-data',
  });
  await data.result();
  await save(client, 'data-stage', 'fixture-data');
  await save(client, 'data-stage', childWorkflowId.data('fixture-data'));

  const bad = loadConfigFile(writePipeline(tempDir(), { name: 'fixture-bad', data: sample }));
  Object.assign(bad.raw as object, { split: { train: 2 } });
  await (await startPipeline(client, bad, { workflowId: 'fixture-bad' })).result().catch(() => undefined);
  await save(client, 'bad-config', 'fixture-bad');

  // The whole run also searches a knowledge file, so its data stage takes the `knowledge` branch the data-only run skips.
  const fullDir = tempDir();
  writeFileSync(join(fullDir, 'faq.csv'), 'question,answer\nDo you ship abroad?,We ship to 30 countries.\n');
  const full = writePipeline(fullDir, {
    name: 'fixture-full',
    data: sample,
    retrieval: { knowledge: [{ path: 'faq.csv' }] },
    model: { base: tinyModel },
    training: { maxSteps: 4, batchSize: 4, maxLength: 96, evalEvery: 4, checkpointEvery: 2, maxValidationRows: 8, device: 'cpu' },
    evaluation: { maxTestRows: 8, maxNewTokens: 8, batchSize: 4 },
    gates: [{ metric: 'rougeL', min: 0 }],
    review: { sampleSize: 3 },
  });
  // The gates pass, so the run waits for review: two reviewers accept every sampled answer, one refused vote between.
  const fullRun = await startPipeline(client, loadConfigFile(full), { workflowId: 'fixture-full' });
  let review: ReviewState | undefined;
  while (!review) review = await fullRun.query(reviewQuery).catch(() => sleep(500).then(() => undefined));
  for (const item of review.items)
    await fullRun.executeUpdate(reviewUpdate, { args: [{ itemId: item.id, reviewer: 'ana', verdict: 'accept' }] });
  await fullRun
    .executeUpdate(reviewUpdate, { args: [{ itemId: 'no-such-item', reviewer: 'bo', verdict: 'accept' }] })
    .catch(() => undefined);
  await fullRun.result();
  for (const id of ['fixture-full', childWorkflowId.data('fixture-full'), childWorkflowId.trial('fixture-full')])
    await save(client, 'full-run', id);
  // The same file again, as a schedule starts it: the model it promoted has this data and config, so nothing new.
  await (await startPipeline(client, loadConfigFile(full), { workflowId: 'fixture-unchanged', onlyIfChanged: true })).result();
  await save(client, 'unchanged', 'fixture-unchanged');

  // A sweep of two points with one rung: one stopped there, one trained on and won.
  const sweepFile = writePipeline(tempDir(), {
    name: 'fixture-sweep',
    data: sample,
    model: { base: tinyModel },
    training: { maxSteps: 4, batchSize: 4, maxLength: 96, evalEvery: 2, checkpointEvery: 2, maxValidationRows: 8, device: 'cpu' },
    evaluation: { maxTestRows: 4, maxNewTokens: 8, batchSize: 4 },
    sweep: { rank: [2, 4], maxParallel: 2, halving: { rungs: [0.5] } },
  });
  await (await startSweep(client, loadConfigFile(sweepFile), { workflowId: 'fixture-sweep' })).result();
  await save(client, 'sweep', 'fixture-sweep');
  writeFileSync(join(out, 'workflow-ids.json'), JSON.stringify(index, null, 2) + '\n');
} finally {
  await stop();
}
