/**
 * Runs one pipeline step through the step cache: the step's key hashes its name, config, input
 * hashes and the code version; a step whose key already has intact outputs is not run again.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { heartbeat } from '@temporalio/activity';
import { canonicalJson, sha256Hex, type ArtifactStore } from './artifacts';
import type { ArtifactRef, StepResult } from '../schemas/manifests';

const projectRoot = join(import.meta.dirname, '..');
const versions = new Map<string, string>();

/** Hash of the source files under `dirs` (relative to the project) with the given extension, tests excluded. */
function hashSources(dirs: string[], extension: string): string {
  const cacheKey = `${dirs.join(',')}${extension}`;
  const known = versions.get(cacheKey);
  if (known) return known;
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        if (name !== 'tests' && name !== '__pycache__') walk(path);
      } else if (name.endsWith(extension)) files.push(path);
    }
  };
  for (const dir of dirs) walk(join(projectRoot, dir));
  const version = sha256Hex(files.map((f) => `${relative(projectRoot, f)}\n${readFileSync(f, 'utf8')}`).join('\n')).slice(0, 16);
  versions.set(cacheKey, version);
  return version;
}

/**
 * Version of the TypeScript that shapes step outputs (activities/ and schemas/). Any edit there
 * invalidates cached steps: stale results are worse than a re-run.
 */
export function codeVersion(): string {
  return hashSources(['activities', 'schemas'], '.ts');
}

/** Version of the Python engine, part of the key of every step the engine computes. */
export function engineVersion(): string {
  return hashSources(['engine'], '.py');
}

export function stepKey(step: string, config: unknown, inputs: ArtifactRef[]): string {
  return sha256Hex(canonicalJson({ step, config, inputs: inputs.map((i) => i.sha256), code: codeVersion() }));
}

export interface StepOutput<S> {
  outputs: Record<string, ArtifactRef>;
  stats: S;
}

/** Heartbeats only when running inside an activity, so the same functions run directly in benchmarks. */
export function beat(details?: unknown): void {
  try {
    heartbeat(details);
  } catch {
    // Not in an activity context.
  }
}

export async function runCachedStep<S>(
  store: ArtifactStore,
  options: { step: string; config: unknown; inputs: ArtifactRef[]; noCache?: boolean },
  compute: (key: string) => Promise<StepOutput<S>>,
): Promise<StepResult<S>> {
  const key = stepKey(options.step, options.config, options.inputs);
  if (!options.noCache) {
    const cached = await store.cachedStep<S>(key);
    if (cached) return { ...cached, reused: true };
  }
  const started = performance.now();
  beat({ step: options.step });
  const { outputs, stats } = await compute(key);
  const result: StepResult<S> = {
    step: options.step,
    key,
    reused: false,
    outputs,
    stats,
    seconds: Math.round(performance.now() - started) / 1000,
  };
  await store.recordStep(result);
  return result;
}
