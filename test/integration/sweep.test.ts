/**
 * Sweeps on a real dev server with the tiny model and real training: the parallelism limit observed
 * from the trials' own training events, successive halving (stopped trials, survivors resumed from
 * their checkpoints, the best one winning), a gpu worker killed mid-sweep, continue-as-new, and
 * cancellation leaving no trial or engine process behind.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTrainingEvents } from '../../activities/train';
import { artifactPath } from '../../activities/artifacts';
import { cancelSweep, startSweep, sweepStatus } from '../../cli/client';
import { loadConfigFile } from '../../cli/config';
import type { SweepManifest, SweepResult, TrialResult } from '../../schemas/manifests';
import { SearchAttributes, childWorkflowId } from '../../workflows/definitions';
import {
  buildTinyModel,
  cliPath,
  killAndWait,
  projectRoot,
  spawnWorker,
  startTestServer,
  tempDir,
  tinyRun,
  waitFor,
  writePipeline,
  type TestServer,
} from './harness';

let env: TestServer;
let tinyModel: string;
const workers: Array<ReturnType<typeof spawnWorker>> = [];

beforeAll(async () => {
  env = await startTestServer();
  tinyModel = buildTinyModel();
  workers.push(spawnWorker('cpu', env.server.address));
  // Three trainers, so only the sweep's own limit (maxParallel: 2) can hold training to two at once.
  for (let n = 0; n < 3; n++) workers.push(spawnWorker('gpu', env.server.address));
});

afterAll(async () => {
  for (const w of workers) await killAndWait(w);
  await env?.close();
});

/** A 6-point grid (ranks 2, 4, 8 × two rates), a 16-step budget, rungs at steps 4 and 8. */
const sweepPipeline = (dir: string, rates: number[]) =>
  writePipeline(dir, {
    name: 'it-sweep',
    ...tinyRun(tinyModel, 16),
    sweep: { rank: [2, 4, 8], alpha: { perRank: 2 }, learningRate: rates, maxParallel: 2, halving: { rungs: [0.25, 0.5], reduction: 2 } },
  });

/** Every leg (rung or final) each trial ran, with its training result. */
async function legsOf(sweepId: string, result: SweepResult): Promise<Array<{ trial: number; leg: string; result: TrialResult }>> {
  const legs = [];
  for (const t of result.trials) {
    const names = [...t.rungs.map((_, n) => `rung-${n + 1}`), ...(t.status === 'finished' ? ['final'] : [])];
    for (const leg of names) {
      const handle = env.client.workflow.getHandle(childWorkflowId.sweepTrial(sweepId, t.trial, leg));
      legs.push({ trial: t.trial, leg, result: (await handle.result()) as TrialResult });
    }
  }
  return legs;
}

const eventsOf = (leg: TrialResult) => parseTrainingEvents(readFileSync(artifactPath(leg.trained.events), 'utf8'));

/** Engine processes of the store in `dir` (their spec lies in its work folders), as [pid, parent pid]. */
const enginesOf = (dir: string) =>
  execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.includes('-m engine') && line.includes(dir))
    .map((line) => line.trim().split(/\s+/).slice(0, 2).map(Number) as [number, number]);

/** The worker process running a training of the store in `dir`. */
const trainerOf = (dir: string) => enginesOf(dir)[0]?.[1];

/** The most trainings running at one moment, from [start, done] of each engine process in the events logs. */
function mostAtOnce(intervals: Array<[number, number]>): number {
  const edges = intervals.flatMap(([start, end]) => [
    [start, 1],
    [end, -1],
  ]);
  edges.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!); // an end before a start at the same instant
  let running = 0;
  let most = 0;
  for (const [, change] of edges) most = Math.max(most, (running += change!));
  return most;
}

describe('a sweep with successive halving', () => {
  const dir = tempDir();
  let sweepId: string;
  let result: SweepResult;

  it('trains at most maxParallel trials at once, stops the weaker at each rung and resumes the rest', async () => {
    const handle = await startSweep(env.client, loadConfigFile(sweepPipeline(dir, [1e-3, 3e-3])));
    sweepId = handle.workflowId;
    result = await handle.result();

    expect(result.totalSteps).toBe(16);
    expect(result.rungs).toEqual([4, 8]);
    expect(result.trials.map((t) => t.label)).toEqual([
      'lora r2 a4 lr 0.001',
      'lora r4 a8 lr 0.001',
      'lora r8 a16 lr 0.001',
      'lora r2 a4 lr 0.003',
      'lora r4 a8 lr 0.003',
      'lora r8 a16 lr 0.003',
    ]);
    // 6 trials -> 3 after step 4 -> 2 after step 8, which train to 16.
    const byStatus = (status: string) => result.trials.filter((t) => t.status === status);
    expect(byStatus('failed')).toEqual([]);
    expect(
      byStatus('stopped')
        .map((t) => t.stoppedAtStep)
        .sort(),
    ).toEqual([4, 4, 4, 8]);
    expect(byStatus('finished').map((t) => t.steps)).toEqual([16, 16]);
    expect(result.trialSteps).toBe(4 * 3 + 8 + 16 * 2);
    expect(result.gridSteps).toBe(6 * 16);

    // The stopped at each rung are the worst by validation loss there.
    for (const [n, rung] of result.rungs.entries()) {
      const there = result.trials.filter((t) => t.rungs.length > n);
      const loss = (t: (typeof there)[number]) => t.rungs[n]!.validationLoss;
      const stopped = there.filter((t) => t.stoppedAtStep === rung);
      const goingOn = there.filter((t) => t.stoppedAtStep !== rung);
      expect(Math.min(...stopped.map(loss))).toBeGreaterThanOrEqual(Math.max(...goingOn.map(loss)));
    }
    // The winner has the lowest final validation loss, and was evaluated and gated as a run's trial is.
    const finished = byStatus('finished');
    const best = finished.reduce((a, b) => (b.validationLoss! < a.validationLoss! ? b : a));
    expect(result.winner).toBe(best.trial);
    expect(result.trials.filter((t) => t.best).map((t) => t.trial)).toEqual([best.trial]);
    expect(result.outcome).toBe('candidate');
    expect(result.evaluation?.rows).toBe(4);

    const legs = await legsOf(sweepId, result);
    // The engine counted the same budget as the sweep did.
    for (const leg of legs) expect(leg.result.trained.metrics.totalSteps).toBe(16);
    // A survivor goes on from its checkpoint: each leg starts where the last ended, no step twice.
    for (const t of finished) {
      const own = legs.filter((l) => l.trial === t.trial);
      expect(own.map((l) => l.result.trained.resumedFromStep)).toEqual([null, 4, 8]);
      const steps = eventsOf(own.at(-1)!.result)
        .filter((e) => e.event === 'step')
        .map((e) => e.step);
      expect(steps).toEqual(Array.from({ length: 16 }, (_, n) => n + 1));
    }
    // Observed, not assumed: never more than two trainings at once, and two at some point.
    const intervals = legs.map(({ result: leg }) => {
      const events = eventsOf(leg);
      const starts = events.filter((e) => e.event === 'start');
      const last = starts.at(-1)!;
      return [last.at, events.filter((e) => e.event === 'done').at(-1)!.at] as [number, number];
    });
    expect(mostAtOnce(intervals)).toBe(2);

    // The sweep and every workflow it started share its search attribute.
    const listed = [];
    for await (const w of env.client.workflow.list({ query: `${SearchAttributes.sweep.name} = "${sweepId}"` })) listed.push(w.workflowId);
    expect(listed).toEqual(expect.arrayContaining([sweepId, `${sweepId}/data`, `${sweepId}/winner`, `${sweepId}/trial-1/rung-1`]));

    const status = await sweepStatus(env.client, sweepId);
    expect(status.status).toBe('COMPLETED');
    expect(status.progress?.trials).toEqual(result.trials);

    // The sweep's folder: its manifest with every trial, the data files, the winner's files, the report.
    const folder = result.sweepFolder!;
    const manifest = JSON.parse(readFileSync(join(folder, 'sweep.json'), 'utf8')) as SweepManifest;
    expect(manifest).toMatchObject({ kind: 'sweep', sweepId, status: 'completed', winner: result.winner, rungs: [4, 8], trialSteps: 52 });
    expect(manifest.trials).toEqual(result.trials);
    expect(manifest.gate?.verdict).toBe('candidate');
    expect(manifest.metrics?.base).toEqual(result.evaluation?.metrics.base);
    expect(manifest.steps.map((s) => s.step)).toEqual(expect.arrayContaining(['ingest', 'split']));
    for (const name of ['train.arrow', 'data-report.md', 'winner-model', 'winner-onnx', 'report'])
      expect(existsSync(join(folder, name)), name).toBe(true);
    expect(manifest.artifacts['winner-model']).toEqual(result.trials[result.winner! - 1]!.model);
    const report = readFileSync(join(folder, 'report', 'report.md'), 'utf8');
    expect(report).toContain(`**Best: trial ${result.winner}**`);
    expect(report.match(/\| stopped at step \d+ \|/g)).toHaveLength(byStatus('stopped').length);
    const curves = readFileSync(join(folder, 'report', 'validation-loss.svg'), 'utf8');
    expect(curves.match(/>rung \d<\/text>/g)).toEqual(['>rung 1</text>', '>rung 2</text>']);
    expect(curves.match(/<polyline[^>]*stroke-dasharray/g)).toHaveLength(byStatus('stopped').length);
    // Each curve reaches as far as its trial trained: the finished ones to step 16, the stopped ones to their rung.
    for (const t of result.trials) expect(curves).toContain(`${t.trial}: ${t.label} at ${t.steps}:`);
    expect(readFileSync(join(folder, 'report', 'metric-by-rank.svg'), 'utf8')).toContain('validation loss by LoRA rank');
  });

  it('`tuneline sweep results --csv` prints every trial with its rungs, and marks the best', () => {
    const csv = execFileSync(process.execPath, [cliPath, 'sweep', 'results', sweepId, '--csv'], {
      cwd: projectRoot,
      env: { ...process.env, TEMPORAL_ADDRESS: env.server.address },
      encoding: 'utf8',
    });
    const [header, ...rows] = csv
      .trim()
      .split('\n')
      .map((line) => line.split(','));
    expect(header).toEqual(expect.arrayContaining(['trial', 'rank', 'alpha', 'status', 'loss@4', 'loss@8', 'validationLoss', 'best']));
    expect(rows).toHaveLength(6);
    const column = (name: string) => rows.map((row) => row[header!.indexOf(name)]);
    expect(column('rank')).toEqual(['2', '4', '8', '2', '4', '8']);
    expect(column('best').indexOf('best') + 1).toBe(result.winner);
    expect(column('status').filter((s) => s === 'finished')).toHaveLength(2);
    expect(column('loss@4').every((loss) => Number(loss) > 0)).toBe(true);
  });

  it('continues as new between rungs with every trial kept, and survives a gpu worker killed mid-training', async () => {
    const dir = tempDir();
    const handle = await startSweep(env.client, loadConfigFile(sweepPipeline(dir, [2e-3, 5e-3])), {
      continueAsNewAfterEvents: 1, // at every rung
    });
    // Kill the worker whose engine is training for this sweep; a new one takes its place.
    const trainer = await waitFor(
      async () => trainerOf(dir),
      (pid) => pid !== undefined,
      120_000,
    );
    const victim = workers.find((w) => w.pid === trainer)!;
    await killAndWait(victim);
    workers.push(spawnWorker('gpu', env.server.address));

    const result = await handle.result();
    expect(result.trials.map((t) => t.trial)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(result.trials.filter((t) => t.status === 'failed')).toEqual([]);
    expect(result.trials.filter((t) => t.status === 'finished')).toHaveLength(2);
    const runs = [];
    for await (const w of env.client.workflow.list({ query: `WorkflowId = "${handle.workflowId}"` })) runs.push(w.status.name);
    expect(runs.filter((s) => s === 'CONTINUED_AS_NEW').length).toBeGreaterThanOrEqual(2);
  });
});

describe('tuneline sweep start', () => {
  it('runs the workers in-process, follows the trials and prints every trial and the winner', () => {
    const path = writePipeline(tempDir(), {
      name: 'it-sweep-cli',
      data: { sample: { rows: 300, seed: 8 } },
      model: { base: tinyModel },
      training: { maxSteps: 4, batchSize: 4, maxLength: 96, checkpointEvery: 2, evalEvery: 2, maxValidationRows: 8, device: 'cpu' },
      evaluation: { baselines: ['base'], forgettingCheck: false, maxTestRows: 4, maxNewTokens: 8, batchSize: 4 },
      sweep: { rank: [2, 4], halving: { rungs: [0.5] } },
    });
    const out = execFileSync(process.execPath, [cliPath, 'sweep', 'start', '--config', path], {
      cwd: projectRoot,
      env: { ...process.env, TEMPORAL_ADDRESS: env.server.address },
      encoding: 'utf8',
      timeout: 200_000,
    });
    expect(out).toMatch(/^Sweep it-sweep-cli-sweep-\S+$/m);
    expect(out).toMatch(/^trial +strategy +rank +alpha .*loss@2 +validationLoss/m);
    expect(out).toMatch(/trial 1 lora r2 a4 lr \S+: (finished|stopped at step 2)/);
    expect(out).toMatch(/^Best: trial [12] \(lora r[24] a[48] lr \S+\), validationLoss \d+\.\d{4}; gate: candidate\.$/m);
    expect(out).toContain('Trained 6 trial steps; the whole grid without halving: 8.');
    expect(out).toMatch(/^Sweep report: \S+\/it-sweep-cli-sweep-\S+\/report\/report\.html \(and report\.md\)$/m);
  });
});

describe('cancelling a sweep', () => {
  it('cancels its running trials: no trial workflow and no engine process outlive it', async () => {
    const dir = tempDir();
    const handle = await startSweep(env.client, loadConfigFile(sweepPipeline(dir, [4e-3])));
    // Wait until a trial's engine is training, then cancel.
    await waitFor(
      async () => enginesOf(dir),
      (found) => found.length > 0,
      120_000,
    );
    await cancelSweep(env.client, handle.workflowId);
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const running = async () => {
      const open = [];
      for await (const w of env.client.workflow.list({
        query: `${SearchAttributes.sweep.name} = "${handle.workflowId}" AND ExecutionStatus = "Running"`,
      }))
        open.push(w.workflowId);
      return open;
    };
    await waitFor(running, (open) => open.length === 0, 60_000);
    // The engine of this sweep's store is gone too.
    await waitFor(
      async () => enginesOf(dir),
      (found) => found.length === 0,
      60_000,
    );
  });
});
