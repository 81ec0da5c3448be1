/**
 * The training activity (gpu task queue). Spawns the engine, heartbeats {step, checkpoint, loss},
 * and resumes from the newest valid checkpoint: the heartbeat's checkpoint is the hint, the
 * checkpoint folder is the truth (a heartbeat sent just before a crash can be lost).
 *
 * The work folder (checkpoints, engine events) is keyed by the training budget, not by where a call
 * pauses (`stopAtStep`), and it outlives the step: a trial paused at a rung and continued later
 * trains only the remaining steps, and ends with the weights of a straight run.
 *
 * With the artifacts in a bucket, the work folder is on one machine: each checkpoint is also copied
 * to the bucket and named in the heartbeat (checkpoint-mirror.ts), so a retry on another gpu worker
 * restores it and resumes there.
 */
import { appendFileSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Context } from '@temporalio/activity';
import { TrainMetrics, type EngineEventOf } from '../schemas/engine';
import type { ArtifactRef, MirroredCheckpoint, StepContext, StepResult, TrainProgress } from '../schemas/manifests';
import type { TrainStats } from '../schemas/steps';
import type { TrainingSection } from '../schemas/config';
import type { TrainSpec } from '../schemas/train-spec';
import { describeBaseModel } from './base-model';
import { CheckpointMirror, restoreCheckpoint } from './checkpoint-mirror';
import { codeVersion } from './code-version';
import { baseModelFor, storeFor } from './context';
import { ObjectStore } from './object-store/store';
import { runEngine } from './engine-process';
import { runCachedStep, stepKey } from './steps';

export interface TrainInput extends StepContext {
  train: ArtifactRef;
  validation: ArtifactRef;
  /** Grounding: the known pairs of every training and validation row (JSON lines by row id). */
  contexts?: ArtifactRef;
  /** Pause at this optimizer step of the budget (a rung); a later call with a later stop continues from it. */
  stopAtStep?: number;
}

interface Checkpoint {
  path: string;
  step: number;
}

/** Complete checkpoints of a work folder, newest first. A folder is valid only with the engine's `complete` marker (written last). */
function completeCheckpoints(workDir: string): Checkpoint[] {
  const dir = join(workDir, 'checkpoints');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((name) => ({ path: join(dir, name), step: Number(/^step-(\d+)$/.exec(name)?.[1]) }))
    .filter((c) => Number.isFinite(c.step) && existsSync(join(c.path, 'complete')))
    .sort((a, b) => b.step - a.step);
}

/**
 * Where to resume: the newest complete checkpoint at or before the stop point, or the heartbeat's
 * checkpoint when it is complete, inside that bound and not older than the folder's newest.
 */
export function chooseResumePoint(workDir: string, hint: Partial<TrainProgress> | undefined, stopAtStep?: number): Checkpoint | undefined {
  const limit = stopAtStep ?? Infinity;
  const newest = completeCheckpoints(workDir).find((c) => c.step <= limit);
  const hinted =
    hint?.checkpoint &&
    typeof hint.checkpointStep === 'number' &&
    hint.checkpointStep <= limit &&
    existsSync(join(hint.checkpoint, 'complete'))
      ? { path: hint.checkpoint, step: hint.checkpointStep }
      : undefined;
  if (hinted && (!newest || hinted.step >= newest.step)) return hinted;
  return newest;
}

/**
 * The training settings the engine computes with (the spec's `training`, and the train step's key),
 * apart from how it is run: the activity policy (Temporal's), grounding (it reaches the engine as
 * the contexts file) and the process count (the result is one process's), which must not change the key.
 */
export function engineTraining(section: TrainingSection): { training: TrainSpec['training']; processes: number } {
  const { activity: _policy, grounding: _grounding, distributed, ...training } = section;
  return { training, processes: distributed.processes };
}

/** Of the checkpoints copied to the bucket, the newest at or before the stop point. */
export function newestMirror(
  candidates: Array<MirroredCheckpoint | null | undefined>,
  stopAtStep?: number,
): MirroredCheckpoint | undefined {
  const limit = stopAtStep ?? Infinity;
  return candidates
    .filter((c): c is MirroredCheckpoint => !!c && c.step <= limit)
    .reduce<MirroredCheckpoint | undefined>((newest, c) => (newest && newest.step >= c.step ? newest : c), undefined);
}

function summarize(stats: TrainStats): string {
  const m = stats.metrics;
  const where = m.pausedAtStep !== null ? `paused at step ${m.pausedAtStep} of ${m.totalSteps}` : `steps=${stats.steps}`;
  const processes = m.processes > 1 ? ` on ${m.processes} processes` : '';
  return `${where}${processes} validationLoss ${m.initialValidationLoss.toFixed(3)} -> ${m.finalValidationLoss.toFixed(3)}`;
}

export async function trainModel(input: TrainInput): Promise<StepResult<TrainStats, 'model' | 'events'>> {
  const store = storeFor(input);
  const { training, processes } = engineTraining(input.config.training);
  const baseModel = await describeBaseModel(input);
  const base = await baseModelFor(input);
  const model = { ...input.config.model, base: base.path };
  const budget = { model: { ...model, base: base.name }, weights: { sha256: baseModel.sha256, revision: baseModel.revision }, training };
  const inputs = [input.train, input.validation, ...(input.contexts ? [input.contexts] : [])];
  const code = codeVersion(import.meta.url, 'train');
  // The work folder belongs to the budget: every stop point of it shares the checkpoints.
  const workKey = stepKey({ step: 'train', config: budget, inputs, code });
  const workDir = store.workDir(workKey);
  // With a bucket, the work folder is on this machine only: checkpoints are copied to the bucket too.
  const bucket = store instanceof ObjectStore ? store : undefined;
  return runCachedStep(
    store,
    { step: 'train', config: { ...budget, stopAtStep: input.stopAtStep ?? null }, inputs, code, noCache: input.noCache, summarize },
    async () => {
      const ctx = Context.current();
      if (input.noCache && ctx.info.attempt === 1) await rm(workDir, { recursive: true, force: true });
      await mkdir(workDir, { recursive: true });
      const hint = ctx.info.heartbeatDetails as Partial<TrainProgress> | undefined;
      // The newest copy in the bucket: the heartbeat names it to a retry, the bucket to a later call of this budget.
      // With noCache, only this run's own copies count: the bucket may still name an earlier run's.
      const named = bucket && !input.noCache ? await bucket.latestCheckpoint(workKey) : undefined;
      const mirrored = bucket ? newestMirror([hint?.mirrored, named], input.stopAtStep) : undefined;
      if (bucket && mirrored) {
        const limit = input.stopAtStep ?? Infinity;
        const localNewest = completeCheckpoints(workDir).find((c) => c.step <= limit)?.step;
        const restored = await restoreCheckpoint(bucket, workDir, mirrored, localNewest);
        if (restored) ctx.log.info(`restored the checkpoint of step ${mirrored.step} from the bucket`, { path: restored });
      }
      const resume = chooseResumePoint(workDir, hint, input.stopAtStep);
      const spec: TrainSpec = {
        model,
        training,
        data: {
          train: await store.fetch(input.train),
          validation: await store.fetch(input.validation),
          ...(input.contexts ? { contexts: await store.fetch(input.contexts) } : {}),
        },
        sources: {
          model: baseModel.sha256 ?? `${baseModel.name}@${baseModel.revision}`,
          train: input.train.sha256,
          validation: input.validation.sha256,
          ...(input.contexts ? { contexts: input.contexts.sha256 } : {}),
        },
        outputDir: workDir,
        ...(resume ? { resumeFrom: resume.path } : {}),
        ...(input.stopAtStep !== undefined ? { stopAtStep: input.stopAtStep } : {}),
      };
      const specPath = join(workDir, `spec-${Date.now()}-attempt-${ctx.info.attempt}.json`);
      // Every attempt's engine events, kept with the model: the record of what was trained when.
      const eventsLog = join(workDir, 'events.jsonl');
      await writeFile(specPath, JSON.stringify(spec, null, 2));

      const progress: TrainProgress = {
        step: resume?.step ?? 0,
        totalSteps: null,
        stopAtStep: input.stopAtStep ?? null,
        checkpoint: resume?.path ?? null,
        checkpointStep: resume?.step ?? null,
        loss: null,
        tokensPerSecond: null,
        validationLoss: null,
        attempt: ctx.info.attempt,
        // A restored or earlier mirror stays the retry's way back until this attempt mirrors a newer one.
        mirrored: mirrored ?? null,
      };
      const mirror = bucket
        ? new CheckpointMirror(
            bucket,
            workDir,
            async (copied) => {
              progress.mirrored = copied;
              await bucket.recordCheckpoint(workKey, copied);
            },
            (message) => ctx.log.warn(message),
          )
        : undefined;
      let start: EngineEventOf<'start'> | undefined;
      let done: EngineEventOf<'done'> | undefined;
      await runEngine({
        args: ['train', '--spec', specPath],
        processes,
        heartbeatDetails: () => progress,
        onEvent: (event) => {
          // `at` (ms since the epoch) dates the line: when trials trained, and how many at once.
          appendFileSync(eventsLog, JSON.stringify({ attempt: ctx.info.attempt, at: Date.now(), ...event }) + '\n');
          if (event.event === 'start') {
            start = event;
            Object.assign(progress, { step: event.step, totalSteps: event.totalSteps });
          } else if (event.event === 'step')
            Object.assign(progress, { step: event.step, loss: event.loss, tokensPerSecond: event.tokensPerSecond });
          else if (event.event === 'eval') progress.validationLoss = event.validationLoss;
          else if (event.event === 'checkpoint') {
            Object.assign(progress, { checkpoint: event.path, checkpointStep: event.step });
            mirror?.offer(event.path, event.step);
          } else if (event.event === 'done') done = event;
        },
      })
        .catch(async (error: unknown) => {
          // Stopped early (cancelled, the worker shutting down): the checkpoint the engine wrote on its
          // way out goes to the bucket too, so a retry on another machine starts from it.
          const last = progress.checkpointStep;
          if (mirror && progress.checkpoint && last !== null && last > (progress.mirrored?.step ?? -1)) {
            await mirror
              .finish(progress.checkpoint, last)
              .catch((copyError: unknown) =>
                ctx.log.warn(`the checkpoint of step ${last} was not copied to the bucket: ${String(copyError)}`),
              );
          }
          throw error;
        })
        .finally(() => mirror?.stop());
      if (!done) throw new Error('the engine exited cleanly without a done event');
      const metrics = TrainMetrics.parse(done.metrics);
      // A pause (a rung): its checkpoint in the bucket, for the continuation on whichever machine.
      if (mirror && metrics.pausedAtStep !== null && progress.checkpoint && progress.checkpointStep === metrics.pausedAtStep)
        await mirror.finish(progress.checkpoint, progress.checkpointStep);
      // final/ moves into the store; the checkpoints stay (bounded by training.keepCheckpoints) for a later continuation.
      const modelRef = await store.putDir(join(workDir, 'final'));
      const eventsText = readFileSync(eventsLog, 'utf8');
      const eventsRef = await store.put(eventsText, '.jsonl', eventsText.split('\n').length - 1);
      return {
        outputs: { model: modelRef, events: eventsRef },
        stats: {
          steps: done.step,
          resumedFromStep: resume?.step ?? null,
          metrics,
          device: start?.device ?? 'unknown',
          trainableParameters: start?.trainableParameters ?? 0,
          baseModel,
        },
      };
    },
  );
}

/** A line of the training events log (`events.jsonl`): an engine event tagged with its attempt. */
export interface LoggedTrainingEvent {
  attempt: number;
  /** When the activity logged it, ms since the epoch. */
  at: number;
  event: string;
  step: number;
  loss?: number;
  device?: string;
  path?: string;
}

/** The complete lines of an events log: one being appended as it is read has no newline yet, and is left for the next read. */
export function parseTrainingEvents(text: string): LoggedTrainingEvent[] {
  return text
    .split('\n')
    .slice(0, -1)
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line) as LoggedTrainingEvent);
}
