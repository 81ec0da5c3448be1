import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTrainingEvents } from '../../activities/train';
import { artifactPath, sha256File, sha256Tree } from '../../activities/artifacts';
import { readRunManifest, startPipeline } from '../../cli/client';
import { loadConfigFile, requireValidConfig } from '../../cli/config';
import type { Lineage } from '../../cli/lineage';
import { temporalReviews } from '../../cli/review-backend';
import { ReviewerStore } from '../../serve/reviewers';
import { createChatServer, type ChatServer } from '../../serve/server';
import { ExportManifest } from '../../schemas/engine';
import type { PipelineResult, ReviewState, ReviewVote, TrialInput, TrialResult } from '../../schemas/manifests';
import { SearchAttributes, TaskQueues, childWorkflowId, reviewQuery, reviewUpdate } from '../../workflows/definitions';
import {
  activityAttempts,
  buildTinyModel,
  cliPath,
  killAndWait,
  projectRoot,
  spawnWorker,
  startTestServer,
  tempDir,
  waitFor,
  writePipeline,
  type TestServer,
} from './harness';

let env: TestServer;
let tinyModel: string;
const workers: Array<ReturnType<typeof spawnWorker>> = [];

const CHROMIUM = '/usr/bin/chromium';
let reviewers: ReviewerStore;
let reviewBackend: ReturnType<typeof temporalReviews>;
let reviewServer: ChatServer;
let reviewAddress: string;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (scripts/test.sh does)`);
  env = await startTestServer();
  tinyModel = buildTinyModel();
  workers.push(spawnWorker('cpu', env.server.address));
  // The review page of `tuneline serve`, on this pipeline's runs (no model: it only reviews).
  reviewers = new ReviewerStore(join(tempDir(), 'feedback.sqlite'));
  reviewBackend = temporalReviews('it-train', { client: async () => env.client, reset: async () => {} });
  reviewServer = await createChatServer(null, { review: { backend: reviewBackend, reviewers } });
  reviewAddress = await reviewServer.app.listen({ host: '127.0.0.1', port: 0 });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-networking'] });
}, 300_000); // the tiny model's tokenizer comes from the default model, converted once per checkout

afterAll(async () => {
  await browser?.close();
  await reviewServer?.shutdown();
  reviewers?.close();
  for (const w of workers) await killAndWait(w);
  await env?.close();
});

type PageVerdict = 'accept' | 'reject' | { correct: string };

/**
 * A reviewer with a new token judges the items of a run's review on the review page, in order, as
 * the page offers them: each offered item must be the next of `expected`.
 */
async function reviewOnPage(reviewer: string, url: string, expected: ReviewState['items'], verdicts: PageVerdict[]) {
  const page = await browser.newPage();
  const failures: string[] = [];
  page.on('pageerror', (err) => failures.push(err.message));
  try {
    await page.goto(`${reviewAddress}${url}#token=${reviewers.invite(reviewer, 'test')}`);
    await expect.poll(() => page.textContent('#reviewer')).toBe(`reviewing as ${reviewer}`);
    for (const [n, verdict] of verdicts.entries()) {
      const item = expected[n]!;
      await expect.poll(() => page.textContent('#question')).toBe(item.question);
      expect(await page.textContent('#answer')).toBe(item.answer);
      expect(await page.textContent('#reference')).toBe(item.reference);
      if (typeof verdict === 'string') await page.click(`#${verdict}`);
      else {
        await page.click('#correct');
        await page.fill('#correction', verdict.correct);
        await page.click('#send-correction');
      }
      if (n < verdicts.length - 1) await expect.poll(() => page.textContent('#question')).toBe(expected[n + 1]!.question);
    }
    await page.waitForSelector('#done:not([hidden])', { timeout: 60_000 }).catch(async (err: Error) => {
      throw new Error(`${err.message}; the page says: ${await page.textContent('#error')}`);
    });
    expect(await page.textContent('#done')).toBe('Every answer is rated: the run decides now.');
    expect(failures).toEqual([]);
    return page;
  } catch (err) {
    await page.close();
    throw err;
  }
}

const readEvents = (ref: { uri: string }) => parseTrainingEvents(readFileSync(artifactPath(ref), 'utf8'));

/** The step checkpoints on disk under the store's work folders, e.g. `step-44`. */
function checkpointsOnDisk(artifacts: string): string[] {
  const work = join(artifacts, 'work');
  if (!existsSync(work)) return [];
  return readdirSync(work).flatMap((key) => {
    const dir = join(work, key, 'checkpoints');
    return existsSync(dir) ? readdirSync(dir).filter((n) => /^step-\d+$/.test(n) && existsSync(join(dir, n, 'complete'))) : [];
  });
}

const FAQ = [
  'question,answer',
  'Where can I buy spare parts?,From the parts page of our online store.',
  'Do you ship abroad?,We ship to 30 countries.',
  'How do I reach support?,Call 555-0100 or use the chat.',
].join('\n');

const config = (dir: string, gates: object[], review: object = { enabled: false }) => {
  writeFileSync(join(dir, 'faq.csv'), FAQ);
  return writePipeline(dir, {
    name: 'it-train',
    data: { sample: { rows: 400, seed: 5 }, columns: { category: 'category', product: 'product', fact: 'fact' } },
    model: { base: tinyModel },
    training: {
      maxSteps: 48,
      batchSize: 4,
      maxLength: 96,
      learningRate: 0.001,
      checkpointEvery: 4,
      evalEvery: 8,
      maxValidationRows: 16,
      device: 'cpu',
      // Long enough for a loaded 2-core machine; the killed attempt is retried after this long.
      activity: { heartbeat: '30s', maxAttempts: 3 },
    },
    // The retriever also searches a small FAQ (its columns are data.columns without the ones it lacks).
    retrieval: { knowledge: [{ path: 'faq.csv' }] },
    evaluation: { maxTestRows: 12, maxNewTokens: 12, batchSize: 4 },
    gates,
    review,
  });
};

describe('training, export and evaluation on a real dev server', () => {
  const dir = tempDir();
  let first: PipelineResult;

  // Training, a killed attempt, its retry after the heartbeat timeout, export and evaluation: about 3 minutes on a quiet
  // 2-core machine, so a timeout with room for a busy one.
  it('resumes training after the gpu worker is killed, then exports, evaluates against both baselines and gates', async () => {
    // One gate the tuned model passes whatever it learned, one no model can pass.
    const loaded = loadConfigFile(
      config(dir, [
        { metric: 'rougeL', min: 0 },
        { metric: 'bleu', min: 101 },
      ]),
    );
    const gpu = spawnWorker('gpu', env.server.address);
    workers.push(gpu);
    const handle = await startPipeline(env.client, loaded);
    // Kill the worker as soon as the first checkpoint is complete on disk (the folder is the truth; heartbeats lag).
    const [atCheckpoint] = await waitFor(
      async () => checkpointsOnDisk(join(dir, 'artifacts')),
      (found) => found.length > 0,
      180_000,
    );
    await killAndWait(gpu, 'SIGKILL');
    workers.push(spawnWorker('gpu', env.server.address));
    first = await handle.result();

    expect(first.outcome).toBe('not-promoted');
    expect(first.training!.steps).toBe(48);
    const trialHandle = env.client.workflow.getHandle(childWorkflowId.trial(handle.workflowId));
    expect(await activityAttempts(trialHandle)).toMatchObject({ trainModel: 2 });
    const events = readEvents(first.training!.events);
    const firstCheckpoints = events.filter((e) => e.attempt === 1 && e.event === 'checkpoint').map((e) => e.step);
    expect(firstCheckpoints).toContain(Number(atCheckpoint!.slice('step-'.length)));
    const resumedStart = events.find((e) => e.attempt === 2 && e.event === 'start')!;
    // The resumed attempt starts at the newest checkpoint the first attempt wrote, not at zero.
    expect(resumedStart.step).toBe(Math.max(...firstCheckpoints));
    expect(first.training!.resumedFromStep).toBe(resumedStart.step);
    const resumedSteps = events.filter((e) => e.attempt === 2 && e.event === 'step').map((e) => e.step);
    expect(Math.min(...resumedSteps)).toBe(resumedStart.step + 1);
    expect(resumedSteps.at(-1)).toBe(48);
    // Checkpoints outlive the step, bounded by keepCheckpoints (2 by default).
    expect(checkpointsOnDisk(join(dir, 'artifacts')).sort()).toEqual(['step-40', 'step-44']);

    // The export step ran on the trained model and its parity check passed.
    const exported = ExportManifest.parse(JSON.parse(readFileSync(join(artifactPath(first.onnx!), 'export.json'), 'utf8')));
    expect(exported.parity).toMatchObject({ identical: true, prompts: 4 });
    expect(exported.parity.tokens).toBeGreaterThan(4);
    expect(exported.mergedAdapter).toBe(true);

    // Evaluation: the same 12 test rows answered by every system, scored together, gated, reported.
    const evaluation = first.evaluation!;
    expect(evaluation.rows).toBe(12);
    const systems = ['tuned', 'tuned-grounded', 'base', 'base-grounded', 'retrieval'];
    expect(Object.keys(evaluation.metrics).sort()).toEqual([...systems].sort());
    expect(evaluation.metrics.tuned!.perplexity).toBeGreaterThan(1);
    expect(evaluation.metrics.base!.perplexity).toBeGreaterThan(1);
    expect(evaluation.gate.results.map((r) => r.status)).toEqual(['passed', 'failed']);
    // Training was grounded, so the gate judges the system that would be served: the tuned model with its known pairs.
    expect(evaluation.gate.system).toBe('tuned-grounded');
    expect(evaluation.gate.reasons).toEqual([expect.stringMatching(/^bleu >= 101: tuned-grounded \d/)]);
    const scores = JSON.parse(readFileSync(join(first.runFolder, 'scores.json'), 'utf8')) as { systems: Record<string, { rows: number }> };
    expect(Object.values(scores.systems).map((s) => s.rows)).toEqual([12, 12, 12, 12, 12]);
    const idsOf = (file: string) =>
      readFileSync(join(first.runFolder, file), 'utf8')
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { id: string }).id)
        .sort();
    const questionIds = idsOf('eval-questions.jsonl');
    for (const system of systems) expect(idsOf(`answers-${system}.jsonl`)).toEqual(questionIds);
    // Every grounded answer records the known pairs its prompt carried: the evaluation's retrieval, in order.
    const lines = (file: string) =>
      readFileSync(join(first.runFolder, file), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { id: string; contextIds?: string[]; context?: Array<{ id: string }> });
    const known = new Map(lines('eval-known-pairs.jsonl').map((row) => [row.id, row.context!.map((pair) => pair.id)]));
    for (const system of ['tuned-grounded', 'base-grounded']) {
      for (const answer of lines(`answers-${system}.jsonl`)) {
        expect(answer.contextIds).toHaveLength(3);
        expect(answer.contextIds).toEqual(known.get(answer.id));
      }
    }
    const markdown = readFileSync(join(first.runFolder, 'report', 'report.md'), 'utf8');
    expect(markdown).toContain('| metric | tuned | tuned + grounding | base (untuned) | base + grounding | retrieval |');
    expect(markdown).toContain('**Not promoted**: bleu >= 101');
    expect(readFileSync(join(first.runFolder, 'report', 'report.html'), 'utf8')).toContain('<td>ROUGE-L F1</td>');
    expect(existsSync(join(first.runFolder, 'report', 'training-curve.png'))).toBe(true);

    // The manifest records every step with hashes that match the files, and the base model's bytes.
    const manifest = readRunManifest(first);
    expect(manifest.steps.map((s) => s.step)).toEqual(
      expect.arrayContaining([
        'ground-training',
        'train',
        'export',
        'eval-set',
        'ground-evaluation',
        'answers-tuned',
        'answers-tuned-grounded',
        'export-base',
        'answers-base',
        'answers-base-grounded',
        'answers-retrieval',
        'forgetting',
        'score',
        'run-report',
      ]),
    );
    expect(manifest.steps.find((s) => s.step === 'train')).toMatchObject({ stage: 'trial', attempt: 2, reused: false });
    // The knowledge rows are indexed beside the training split, and the retrieval baseline searches them all.
    expect(manifest.steps.find((s) => s.step === 'knowledge')).toMatchObject({ stage: 'data', stats: { rows: 3 } });
    const indexed = first.data.splits.train.rows! + 3;
    expect(manifest.steps.find((s) => s.step === 'retrieval-index')?.stats).toMatchObject({ rows: indexed });
    expect(manifest.steps.find((s) => s.step === 'answers-retrieval')?.stats).toMatchObject({ indexRows: indexed });
    expect(existsSync(join(first.runFolder, 'knowledge.arrow'))).toBe(true);
    expect(manifest.baseModel).toMatchObject({ kind: 'folder', path: tinyModel, sha256: (await sha256Tree(tinyModel)).sha256 });
    expect(manifest.gate?.verdict).toBe('not-promoted');
    for (const ref of Object.values(manifest.artifacts)) {
      const path = artifactPath(ref);
      expect(statSync(path).isDirectory() ? (await sha256Tree(path)).sha256 : await sha256File(path)).toBe(ref.sha256);
    }
  }, 480_000);

  /** A run of the same model (every step reused) that waits for review of 4 answers, and its review once open. */
  async function reviewedRun(review: object) {
    const gates = [
      { metric: 'rougeL', min: 0 },
      { metric: 'satisfaction', min: 0.5 },
    ];
    const handle = await startPipeline(
      env.client,
      loadConfigFile(config(dir, gates, { sampleSize: 4, satisfactionTarget: 0.75, ...review })),
    );
    const state = await waitFor(
      () => handle.query(reviewQuery),
      (s) => s?.status === 'open',
      120_000,
    );
    const vote = (itemId: string, reviewer: string, verdict: string, correction?: string) =>
      handle.executeUpdate(reviewUpdate, { args: [{ itemId, reviewer, verdict, ...(correction ? { correction } : {}) } as ReviewVote] });
    return { handle, state, vote };
  }

  it('human review: the run waits for reviewers; votes are checked; all accepted promotes it, the votes in run.json', async () => {
    const { handle, state, vote } = await reviewedRun({});
    expect(state.items).toHaveLength(4);
    expect((await handle.describe()).typedSearchAttributes.get(SearchAttributes.stage)).toBe('review');
    const [item, ...rest] = state.items;
    // Each refusal says why, and counts nothing.
    // A refused Update fails with the workflow's reason as its cause.
    const refusal = (update: Promise<unknown>) =>
      update.then(
        () => 'counted',
        (err: Error) => (err.cause as Error | undefined)?.message,
      );
    expect(await refusal(vote('no-such-item', 'ana', 'accept'))).toBe('no item no-such-item in this review');
    expect(await refusal(vote(item!.id, 'ana', 'correct'))).toBe('a correct verdict carries the corrected answer');
    // A vote from the command line, then the same reviewer again.
    const cli = spawnSync(process.execPath, [cliPath, 'review', 'vote', handle.workflowId, item!.id, 'accept', '--reviewer', 'ana'], {
      cwd: projectRoot,
      env: { ...process.env, TEMPORAL_ADDRESS: env.server.address },
      encoding: 'utf8',
    });
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toContain('1 of 4 answers rated');
    expect(await refusal(vote(item!.id, 'ana', 'reject'))).toBe(`ana has voted on ${item!.id} already`);
    // The rest on the review page, in Chromium: the page offers the three items nobody judged, in order.
    const page = await reviewOnPage('cy', `/review?run=${handle.workflowId}`, rest, ['accept', 'accept', 'accept']);

    const result = await handle.result();
    expect(result.outcome).toBe('promoted');
    // The closed review, as the page shows it once the run has decided.
    await page.reload();
    await expect.poll(() => page.textContent('#done')).toBe('This review is closed: passed.');
    await page.close();
    expect(result.steps.filter((s) => !s.reused).map((s) => s.step)).toEqual(['run-report']);
    expect(result.training!.model).toEqual(first.training!.model);
    expect(result.evaluation!.gate.results.map((r) => r.status)).toEqual(['passed', 'passed']);
    const manifest = readRunManifest(result);
    expect(manifest.review).toMatchObject({ status: 'passed', satisfaction: 1, rated: 4, target: 0.75 });
    expect(manifest.review!.votes.map((v) => [v.itemId, v.reviewer, v.verdict])).toEqual(
      state.items.map((i, n) => [i.id, n === 0 ? 'ana' : 'cy', 'accept']),
    );
    expect(manifest.review!.interval![0]).toBeCloseTo(0.5101, 3); // Wilson 95% for 4 of 4
    expect(manifest.metrics![result.evaluation!.gate.system]!.satisfaction).toBe(1);
    // The audit report names who reviewed, and who promoted.
    const audit = spawnSync(process.execPath, [cliPath, 'audit', 'report', handle.workflowId, '--format', 'json'], {
      cwd: projectRoot,
      env: { ...process.env, TEMPORAL_ADDRESS: env.server.address },
      encoding: 'utf8',
    });
    expect(audit.status, audit.stderr).toBe(0);
    const lineage = JSON.parse(audit.stdout) as Lineage;
    expect(lineage.review?.votes.map((v) => v.reviewer)).toEqual(['ana', 'cy', 'cy', 'cy']);
    expect(lineage.approvals).toEqual([expect.objectContaining({ runId: handle.workflowId, by: `pipeline ${handle.workflowId}` })]);
    // The review is closed: a late vote is refused.
    const late = spawnSync(process.execPath, [cliPath, 'review', 'vote', handle.workflowId, item!.id, 'accept', '--reviewer', 'bo'], {
      cwd: projectRoot,
      env: { ...process.env, TEMPORAL_ADDRESS: env.server.address },
      encoding: 'utf8',
    });
    expect(late.status).toBe(2);
    expect(late.stderr).toMatch(/^vote not counted: .*completed/);
  });

  it('human review on the review page: enough rejected answers fail it, and the run is not promoted, saying why', async () => {
    const { handle, state } = await reviewedRun({});
    // The only run in review (once visibility lists it): the page opens it without being told which.
    await waitFor(
      () => reviewBackend.open(),
      (open) => open.length === 1 && open[0]!.runId === handle.workflowId,
    );
    const page = await reviewOnPage('bo', '/review', state.items, [
      'accept',
      'accept',
      'reject',
      { correct: 'Hold the button for ten seconds.' },
    ]);
    await page.close();
    const result = await handle.result();
    expect(result.outcome).toBe('not-promoted');
    expect(result.evaluation!.gate.reasons.at(-1)).toMatch(/^review: satisfaction 0\.500 is below the target 0\.75/);
    const review = readRunManifest(result).review!;
    expect(review).toMatchObject({ status: 'failed', satisfaction: 0.5 });
    expect(review.votes.map((v) => [v.reviewer, v.verdict, v.correction])).toEqual([
      ['bo', 'accept', undefined],
      ['bo', 'accept', undefined],
      ['bo', 'reject', undefined],
      ['bo', 'correct', 'Hold the button for ten seconds.'],
    ]);
  });

  it('human review: a review nobody finishes expires at its timeout', async () => {
    const { handle, vote, state } = await reviewedRun({ timeout: '4s' });
    await vote(state.items[0]!.id, 'ana', 'accept');
    const result = await handle.result();
    expect(result.outcome).toBe('review-expired');
    expect(readRunManifest(result).review).toMatchObject({ status: 'expired', rated: 1 });
  });

  it('a trial paused at a rung keeps its checkpoint, and continuing it trains only the remaining steps', async () => {
    const { config: resolved, configDir } = requireValidConfig(config(dir, []));
    const trial = (overrides: TrialInput['overrides'], id: string) =>
      env.client.workflow.execute('trial', {
        taskQueue: TaskQueues.cpu,
        workflowId: `${id}-${Date.now()}`,
        args: [{ context: { config: resolved, configDir }, runId: id, splits: first.data.splits, overrides, stopAfter: 'export' }],
      }) as Promise<TrialResult>;
    // Another budget (8 steps, another rate): its own work folder, so nothing of the first run is reused.
    const paused = await trial({ maxSteps: 8, learningRate: 0.002, stopAtStep: 4 }, 'it-rung');
    expect(paused.trained.metrics).toMatchObject({ pausedAtStep: 4, steps: 4, totalSteps: 8 });
    const continued = await trial({ maxSteps: 8, learningRate: 0.002 }, 'it-rung');
    expect(continued.trained.resumedFromStep).toBe(4);
    expect(continued.trained.metrics).toMatchObject({ pausedAtStep: null, steps: 8, totalSteps: 8 });
    expect(continued.training.learningRate).toBe(0.002);
    const events = readEvents(continued.trained.events);
    const trainedSteps = events.filter((e) => e.event === 'step').map((e) => e.step);
    // The events log of the budget's work folder holds both calls: steps 1-4, then 5-8, none twice.
    expect(trainedSteps).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(events.filter((e) => e.event === 'start').map((e) => e.step)).toEqual([0, 4]);
  });

  it('export.quantize int8: the trained model is served as int8, its quality measured on the validation split', async () => {
    const { config: resolved, configDir } = requireValidConfig(config(dir, []));
    // Limits the tiny model passes: what is checked is where the figures come from.
    const quantized = { ...resolved, export: { quantize: 'int8' as const, minTokenAgreement: 0, maxPerplexityIncrease: 10 } };
    const result = (await env.client.workflow.execute('trial', {
      taskQueue: TaskQueues.cpu,
      workflowId: `it-int8-${Date.now()}`,
      args: [
        { context: { config: quantized, configDir }, runId: 'it-int8', splits: first.data.splits, overrides: {}, stopAfter: 'export' },
      ],
    })) as TrialResult;
    // The quality check reads the run's validation split, so the export step keys on it.
    const exportStep = result.steps.find((s) => s.step === 'export')!;
    expect(exportStep.reused).toBe(false);
    expect(exportStep.inputs.map((ref) => ref.sha256)).toContain(first.data.splits.validation.sha256);
    const manifest = ExportManifest.parse(JSON.parse(readFileSync(join(artifactPath(result.onnx!), 'export.json'), 'utf8')));
    expect([manifest.file, manifest.dtype, manifest.quality?.perplexityText]).toEqual(['model_int8.onnx', 'int8', 'validation']);
    expect(existsSync(join(artifactPath(result.onnx!), 'model.onnx'))).toBe(false);
    expect(manifest.quality!.prompts).toBe(8);
  });

  it('refuses training overrides outside the schema, before any training', async () => {
    const { config: resolved, configDir } = requireValidConfig(config(dir, []));
    const failure = await env.client.workflow
      .execute('trial', {
        taskQueue: TaskQueues.cpu,
        workflowId: `it-bad-override-${Date.now()}`,
        args: [{ context: { config: resolved, configDir }, runId: 'x', splits: first.data.splits, overrides: { learningRate: 5 } }],
      })
      .catch((err: Error & { cause?: Error }) => err.cause?.message ?? err.message);
    expect(failure).toMatch(/training overrides are invalid[\s\S]*learningRate/);
  });
});
