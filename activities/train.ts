/**
 * The training activity (gpu task queue). Spawns the engine, heartbeats {step, checkpoint, loss},
 * and on a retried attempt resumes from the newest valid checkpoint: the heartbeat's checkpoint is
 * the hint, the checkpoint folder is the truth (a heartbeat sent just before a crash can be lost).
 */
import { appendFileSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Context } from '@temporalio/activity';
import type { PipelineConfig } from '../schemas/config';
import type { EngineEvent, TrainSpec } from '../schemas/engine';
import type { ArtifactRef, StepResult, TrainProgress } from '../schemas/manifests';
import { artifactPath } from './artifacts';
import { baseModelFor, storeFor } from './data-stage';
import { runEngine } from './engine-process';
import { engineVersion, runCachedStep } from './steps';

export interface TrainInput {
  config: PipelineConfig;
  configDir: string;
  noCache?: boolean;
  train: ArtifactRef;
  validation: ArtifactRef;
}

export interface TrainStats {
  steps: number;
  resumedFromStep: number | null;
  metrics: Record<string, number | null>;
  device: string;
  trainableParameters: number;
}

/** A checkpoint folder is valid only when the engine wrote its `complete` marker (written last). */
export function newestCheckpoint(workDir: string): { path: string; step: number } | undefined {
  const dir = join(workDir, 'checkpoints');
  if (!existsSync(dir)) return undefined;
  const valid = readdirSync(dir)
    .map((name) => ({ name, step: Number(/^step-(\d+)$/.exec(name)?.[1]) }))
    .filter((c) => Number.isFinite(c.step) && existsSync(join(dir, c.name, 'complete')))
    .sort((a, b) => b.step - a.step);
  return valid[0] && { path: join(dir, valid[0].name), step: valid[0].step };
}

/** Where to resume: the heartbeat's checkpoint when it is still valid and not older than the folder's newest. */
export function chooseResumePoint(workDir: string, hint: Partial<TrainProgress> | undefined): { path: string; step: number } | undefined {
  const newest = newestCheckpoint(workDir);
  const hinted =
    hint?.checkpoint && typeof hint.checkpointStep === 'number' && existsSync(join(hint.checkpoint, 'complete'))
      ? { path: hint.checkpoint, step: hint.checkpointStep }
      : undefined;
  if (hinted && (!newest || hinted.step >= newest.step)) return hinted;
  return newest;
}

export async function trainModel(input: TrainInput): Promise<StepResult<TrainStats>> {
  const store = storeFor(input);
  const model = { ...input.config.model, base: baseModelFor(input) };
  const { activity: _policy, ...training } = input.config.training;
  const keyConfig = { model, training, engine: engineVersion() };
  return runCachedStep(
    store,
    { step: 'train', config: keyConfig, inputs: [input.train, input.validation], noCache: input.noCache },
    async (key) => {
      const ctx = Context.current();
      // Keyed like the step, so a retried attempt (or a later run of the same config) finds the checkpoints.
      const workDir = store.workDir(key);
      if (input.noCache && ctx.info.attempt === 1) await rm(workDir, { recursive: true, force: true });
      await mkdir(workDir, { recursive: true });
      const resume = chooseResumePoint(workDir, ctx.info.heartbeatDetails as Partial<TrainProgress> | undefined);
      const spec: TrainSpec = {
        model,
        training,
        data: { train: artifactPath(input.train), validation: artifactPath(input.validation) },
        outputDir: workDir,
        ...(resume ? { resumeFrom: resume.path } : {}),
      };
      const specPath = join(workDir, `spec-attempt-${ctx.info.attempt}.json`);
      // Every attempt's engine events, kept with the model: the record of what was trained when.
      const eventsLog = join(workDir, 'events.jsonl');
      await writeFile(specPath, JSON.stringify(spec, null, 2));

      const progress: TrainProgress = {
        step: resume?.step ?? 0,
        totalSteps: null,
        checkpoint: resume?.path ?? null,
        checkpointStep: resume?.step ?? null,
        loss: null,
        tokensPerSecond: null,
        validationLoss: null,
        attempt: ctx.info.attempt,
      };
      let start: Extract<EngineEvent, { event: 'start' }> | undefined;
      let done: Extract<EngineEvent, { event: 'done' }> | undefined;
      await runEngine({
        args: ['train', '--spec', specPath],
        heartbeatDetails: () => progress,
        onEvent: (event) => {
          appendFileSync(eventsLog, JSON.stringify({ attempt: ctx.info.attempt, ...event }) + '\n');
          if (event.event === 'start') {
            start = event;
            Object.assign(progress, { step: event.step, totalSteps: event.totalSteps });
          } else if (event.event === 'step')
            Object.assign(progress, { step: event.step, loss: event.loss, tokensPerSecond: event.tokensPerSecond });
          else if (event.event === 'eval') progress.validationLoss = event.validationLoss;
          else if (event.event === 'checkpoint') Object.assign(progress, { checkpoint: event.path, checkpointStep: event.step });
          else if (event.event === 'done') done = event;
        },
      });
      if (!done) throw new Error('the engine exited cleanly without a done event');
      const modelRef = await store.putDir(join(workDir, 'final'));
      const eventsText = readFileSync(eventsLog, 'utf8');
      const eventsRef = await store.put(eventsText, '.jsonl', eventsText.split('\n').length - 1);
      // Checkpoints exist to resume this step; once its artifact is stored they are only disk use.
      await rm(workDir, { recursive: true, force: true });
      return {
        outputs: { model: modelRef, events: eventsRef },
        stats: {
          steps: done.step,
          resumedFromStep: resume?.step ?? null,
          metrics: done.metrics,
          device: start?.device ?? 'unknown',
          trainableParameters: start?.trainableParameters ?? 0,
        },
      };
    },
  );
}
