/**
 * Runs one pipeline step through the step cache: the step's key hashes its name, config, input
 * hashes and the version of the code it runs (`code-version.ts`); a step whose key already has
 * intact outputs is not run again. Every step says its own one-line summary.
 */
import { Context, heartbeat } from '@temporalio/activity';
import type { ArtifactRef, StepResult } from '../schemas/manifests';
import { canonicalJson, sha256Hex, type StepStore } from './artifacts';

export interface StepSpec<S> {
  step: string;
  /** Every setting that changes the step's outputs. */
  config: unknown;
  inputs: ArtifactRef[];
  /** `codeVersion(import.meta.url, engineCommand?)` of the module defining the step. */
  code: string;
  noCache?: boolean;
  /** The step's line in progress displays, from its stats. */
  summarize: (stats: S) => string;
}

export interface StepOutput<S, O extends string> {
  outputs: Record<O, ArtifactRef>;
  stats: S;
}

export function stepKey(spec: Pick<StepSpec<unknown>, 'step' | 'config' | 'inputs' | 'code'>): string {
  return sha256Hex(canonicalJson({ step: spec.step, config: spec.config, inputs: spec.inputs.map((i) => i.sha256), code: spec.code }));
}

function currentAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1; // called directly (benchmarks, tests), not as an activity
  }
}

/** Heartbeats only when running inside an activity, so the same functions run directly in benchmarks. */
export function beat(details?: unknown): void {
  try {
    heartbeat(details);
  } catch {
    // Not in an activity context.
  }
}

const elapsedSeconds = (started: number) => Math.round(performance.now() - started) / 1000;

/** Runs `compute` unless the cache holds intact outputs for the step's key. */
export async function runCachedStep<S, O extends string>(
  store: StepStore,
  spec: StepSpec<S>,
  compute: (key: string) => Promise<StepOutput<S, O>>,
): Promise<StepResult<S, O>> {
  const key = stepKey(spec);
  if (!spec.noCache) {
    const cached = await store.cachedStep<S, O>(key);
    if (cached) return { ...cached, reused: true, attempt: currentAttempt(), summary: spec.summarize(cached.stats) };
  }
  const started = performance.now();
  beat({ step: spec.step });
  const { outputs, stats } = await compute(key);
  const result: StepResult<S, O> = {
    step: spec.step,
    key,
    codeVersion: spec.code,
    reused: false,
    attempt: currentAttempt(),
    inputs: spec.inputs,
    outputs,
    stats,
    summary: spec.summarize(stats),
    seconds: elapsedSeconds(started),
  };
  await store.recordStep(result);
  return result;
}

/** A step that is always computed (its work is a hash or a lookup), reported like a cached one. */
export async function runUncachedStep<S, O extends string>(
  spec: Omit<StepSpec<S>, 'noCache'>,
  compute: () => Promise<StepOutput<S, O>>,
): Promise<StepResult<S, O>> {
  const started = performance.now();
  const { outputs, stats } = await compute();
  return {
    step: spec.step,
    key: stepKey(spec),
    codeVersion: spec.code,
    reused: false,
    attempt: currentAttempt(),
    inputs: spec.inputs,
    outputs,
    stats,
    summary: spec.summarize(stats),
    seconds: elapsedSeconds(started),
  };
}
