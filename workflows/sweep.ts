/**
 * `sweep`: one data stage, then one `trial` child per grid point (sweep.*), at most
 * `sweep.maxParallel` training at once, compared at each rung by validation loss (successive
 * halving): the best 1/reduction go on from their checkpoint, the rest stop there. The winner by
 * `sweep.metric` is exported, evaluated and gated like a single run's trial.
 *
 * Durable: every trial leg is a child workflow with a deterministic id (`<sweep>/trial-3/rung-1`),
 * a failed trial is a result, not a failed sweep, and between rungs the sweep continues as new with
 * everything it decided once its history grows long. Cancelling the sweep cancels its running
 * trials (their training is stopped with a checkpoint).
 */
import {
  ContinueAsNew,
  continueAsNew,
  executeChild,
  isCancellation,
  patched,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { PipelineConfig } from '../schemas/config';
import type { SystemName } from '../schemas/engine';
import type {
  ArtifactRef,
  MetricTable,
  SweepInput,
  SweepProgress,
  SweepResult,
  SweepState,
  TrainingOverrides,
  TrialInput,
  TrialResult,
} from '../schemas/manifests';
import { cpuActivitiesFor } from './activities';
import { dataStage } from './data-stage';
import { SearchAttributes, childWorkflowId, sweepQuery } from './definitions';
import { StageTracker, asWorkflowFailure, childOptions, rootCause } from './progress';
import { dataStageFiles, trialFiles } from './run-files';
import { bestTrial, budgetSteps, describePoint, lowerIsBetter, rungSteps, survivors, sweepPoints } from './sweep-plan';
import { trial } from './trial';

/** Runs `run` on every item, at most `limit` at once, in order of the list. */
async function inPool<T>(items: T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const lanes = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await run(item);
  });
  await Promise.all(lanes);
}

const errorText = (err: unknown) => {
  const cause = rootCause(err);
  return cause instanceof Error ? cause.message : String(cause);
};

const TUNED_SYSTEMS: readonly SystemName[] = ['tuned', 'tuned-grounded'];

/** The tuned systems' rows of an evaluation: the baselines are the same for every trial, and recorded once. */
const tunedRows = (metrics: MetricTable): MetricTable =>
  Object.fromEntries(TUNED_SYSTEMS.filter((s) => metrics[s]).map((s) => [s, metrics[s]]));

/** Optimizer steps the trials trained, and what the whole grid would train without halving. */
const stepsSpent = (trials: SweepState['trials'], totalSteps: number) => ({
  trialSteps: trials.reduce((sum, t) => sum + t.steps, 0),
  gridSteps: trials.length * totalSteps,
});

/** Sweeps started before sweeps were recorded replay without the record. */
const RECORD_PATCH = 'sweep-record';

export async function sweep(input: SweepInput): Promise<SweepResult> {
  const sweepId = workflowInfo().workflowId;
  const tracker = new StageTracker('validate');
  const cpu = cpuActivitiesFor(input.dataHeartbeatTimeout);
  let config: PipelineConfig | null = null;
  let state: SweepState | null = input.state ?? null;
  const progress: SweepProgress = { stage: 'validate', metric: null, totalSteps: null, rungs: [], trials: [], winner: null };
  setHandler(sweepQuery, () => ({ ...progress, trials: state?.trials ?? [] }));
  const heartbeatTimeout = input.dataHeartbeatTimeout;
  const { state: _carried, ...sweepInput } = input;
  const startedAt = workflowInfo().startTime.toISOString();
  /** Writes `sweep.json` (and, once trials ran, the report) as the sweep stands now. */
  const record = (
    status: 'running' | 'completed' | 'failed',
    extra: Partial<Parameters<typeof cpu.recordSweep>[0]> = {},
  ): Promise<{ manifest: ArtifactRef; sweepFolder: string; report: ArtifactRef | null }> => {
    const trials = state?.trials ?? [];
    return cpu.recordSweep({
      sweepId,
      sweep: sweepInput,
      config,
      status,
      error: null,
      startedAt,
      updatedAt: new Date().toISOString(),
      metric: config?.sweep.metric ?? 'validationLoss',
      totalSteps: state?.totalSteps ?? null,
      rungs: state?.rungs ?? [],
      trials,
      winner: progress.winner,
      metrics: null,
      gate: null,
      ...stepsSpent(trials, state?.totalSteps ?? 0),
      previous: state?.manifest,
      ...extra,
    });
  };

  try {
    config = await cpu.validatePipelineConfig({ config: input.config, configDir: input.configDir });
    upsertSearchAttributes([
      { key: SearchAttributes.pipeline, value: config.name },
      { key: SearchAttributes.configHash, value: input.configHash },
      { key: SearchAttributes.sweep, value: sweepId },
    ]);
    const context = { config, configDir: input.configDir, noCache: input.noCache, staged: input.staged };
    const { sweep: plan } = config;
    progress.metric = plan.metric;

    if (!state) {
      progress.stage = 'data';
      tracker.enter('data');
      const dataId = childWorkflowId.data(sweepId);
      const data = await tracker.child('data', dataId, () =>
        executeChild(dataStage, { ...childOptions(dataId), args: [{ context, runId: sweepId, heartbeatTimeout }] }),
      );
      const totalSteps = budgetSteps(config.training, data.splits.train.rows ?? 0);
      state = {
        data: { splits: data.splits, knowledge: data.knowledge },
        totalSteps,
        rungs: plan.halving.enabled ? rungSteps(plan.halving.rungs, totalSteps) : [],
        stage: 0,
        trials: sweepPoints(config).map((point, n) => ({
          trial: n + 1,
          point,
          label: describePoint(point),
          status: 'pending',
          steps: 0,
          rungs: [],
          validationLoss: null,
          metric: null,
          trainSeconds: 0,
          tokensPerSecond: null,
          trainableParameters: null,
          peakMemoryBytes: null,
          model: null,
          evaluation: null,
        })),
        dataSteps: data.progress,
      };
      if (patched(RECORD_PATCH)) {
        const steps = data.steps.map((result) => ({ stage: 'data' as const, result }));
        state.manifest = (await record('running', { data: { source: data.source, steps, files: dataStageFiles(data) } })).manifest;
      }
    }
    const current = state;
    Object.assign(progress, { stage: 'trials', totalSteps: current.totalSteps, rungs: current.rungs });
    if (input.state) tracker.progress.steps.push(...current.dataSteps); // a run continued as new
    tracker.enter('trial');
    const evaluateEach = plan.metric !== 'validationLoss';
    const lower = lowerIsBetter(plan.metric);

    /** One trial child: the sweep's splits, a point's overrides, and where it stops. */
    const runTrial = (id: string, overrides: TrainingOverrides, stopAfter: TrialInput['stopAfter']): Promise<TrialResult> =>
      executeChild(trial, {
        ...childOptions(id),
        args: [
          {
            context,
            runId: sweepId,
            splits: current.data.splits,
            knowledge: current.data.knowledge?.rows,
            overrides,
            stopAfter,
            heartbeatTimeout,
          },
        ],
      });
    const threshold = input.continueAsNewAfterEvents ?? 10_000;
    for (let ranHere = false; current.stage <= current.rungs.length; current.stage++, ranHere = true) {
      // Between rungs no trial runs: the state is all there is to carry. At least one rung per run, so it always moves on.
      if (ranHere && (workflowInfo().historyLength >= threshold || workflowInfo().continueAsNewSuggested)) {
        await continueAsNew<typeof sweep>({ ...input, state: current });
      }
      const final = current.stage === current.rungs.length;
      const rung = final ? undefined : current.rungs[current.stage]!;
      const going = current.trials.filter((t) => t.status === 'pending' || t.status === 'paused');
      await inPool(going, plan.maxParallel, async (t) => {
        t.status = 'running';
        try {
          const result = await runTrial(
            childWorkflowId.sweepTrial(sweepId, t.trial, final ? 'final' : `rung-${current.stage + 1}`),
            { ...t.point, ...(rung !== undefined ? { stopAtStep: rung } : {}) },
            final && evaluateEach ? undefined : 'train',
          );
          const m = result.trained.metrics;
          Object.assign(t, {
            steps: result.trained.steps,
            trainSeconds: m.trainSeconds,
            tokensPerSecond: m.tokensPerSecond,
            trainableParameters: result.trained.trainableParameters,
            peakMemoryBytes: Math.max(t.peakMemoryBytes ?? 0, m.peakMemoryBytes),
            model: result.trained.model,
          });
          if (rung !== undefined) {
            t.rungs.push({ step: rung, validationLoss: m.lastValidationLoss });
            t.status = 'paused';
          } else {
            t.validationLoss = m.finalValidationLoss;
            const evaluation = result.evaluation;
            t.metric = evaluateEach ? (evaluation?.metrics[evaluation.gate.system]?.[plan.metric] ?? null) : m.finalValidationLoss;
            t.evaluation = evaluation ? tunedRows(evaluation.metrics) : null;
            t.status = 'finished';
          }
        } catch (err) {
          if (isCancellation(err)) throw err;
          Object.assign(t, { status: 'failed', error: errorText(err) });
        }
      });
      if (final) break;
      const scores = going.map((t) => ({ trial: t.trial, score: t.status === 'paused' ? t.rungs.at(-1)!.validationLoss : null }));
      const kept = new Set(survivors(scores, plan.halving.reduction, plan.halving.minTrials));
      for (const t of going) {
        if (t.status === 'paused' && !kept.has(t.trial)) Object.assign(t, { status: 'stopped', stoppedAtStep: rung });
      }
    }

    const winner = bestTrial(
      current.trials.map((t) => ({ trial: t.trial, score: t.status === 'finished' ? t.metric : null })),
      lower,
    );
    progress.winner = winner;
    let result: TrialResult | null = null;
    if (winner !== null) {
      current.trials[winner - 1]!.best = true;
      progress.stage = 'winner';
      // Training and (for an evaluation metric) evaluation come from the step cache: only what is missing runs.
      const id = childWorkflowId.winner(sweepId);
      result = await tracker.child('trial', id, () => runTrial(id, current.trials[winner - 1]!.point, undefined));
    }
    const recorded = patched(RECORD_PATCH)
      ? await record('completed', {
          metrics: result?.evaluation?.metrics ?? null,
          gate: result?.evaluation?.gate ?? null,
          winnerFiles: result ? trialFiles(result) : undefined,
        })
      : null;
    progress.stage = 'done';
    tracker.enter('done');
    return {
      pipeline: config.name,
      metric: plan.metric,
      totalSteps: current.totalSteps,
      rungs: current.rungs,
      trials: current.trials,
      winner,
      outcome: result?.evaluation ? result.evaluation.gate.verdict : 'no-winner',
      evaluation: result?.evaluation ?? null,
      ...stepsSpent(current.trials, current.totalSteps),
      sweepFolder: recorded?.sweepFolder ?? null,
      manifest: recorded?.manifest ?? null,
      report: recorded?.report ?? null,
    };
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    progress.stage = 'failed';
    progress.error = errorText(err);
    tracker.fail(err);
    // The record of a failed sweep says what it ran and why it stopped; failing to write it must not hide the error.
    if (!isCancellation(err) && patched(RECORD_PATCH)) await record('failed', { error: progress.error }).catch(() => undefined);
    throw asWorkflowFailure(err);
  }
}
