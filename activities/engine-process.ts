/**
 * Runs one `python -m engine ...` command as an activity's child: in its own process group (so
 * every process it starts dies with it), events parsed from stdout, heartbeats from events plus a
 * keep-alive, cancellation turned into SIGTERM (the engine checkpoints) and SIGKILL after a grace
 * period, and exit codes mapped to retryable or non-retryable failures.
 *
 * With several processes (`training.distributed.processes`) the child is torchrun, which starts the
 * engine's processes in sessions of their own: SIGTERM reaches them through torchrun (which passes
 * it on), and each dies with torchrun when the group is killed (engine/distributed.py).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { z } from 'zod';
import { EngineEvent, type EngineEventOf } from '../schemas/engine';
import { EngineExit, ErrorTypes, engineErrorKinds, errorTypeForExit, isNonRetryable } from '../schemas/errors';

const projectRoot = resolve(import.meta.dirname, '..');
/** How long the engine has after SIGTERM (finish the step, checkpoint) before its group is killed. */
const DEFAULT_GRACE_MS = 120_000;

export function enginePython(): string {
  return process.env.TUNELINE_PYTHON ?? join(projectRoot, '.venv', 'bin', 'python');
}

export interface EngineRunOptions {
  args: string[];
  /** The interpreter; the project's virtual environment by default. */
  python?: string;
  /** Data-parallel processes under torchrun (1: the engine alone). */
  processes?: number;
  onEvent: (event: EngineEvent) => void;
  /** What the heartbeat carries; called on every event and every keep-alive tick. */
  heartbeatDetails: () => unknown;
  /** Time the engine gets after SIGTERM to finish its optimizer step (tens of seconds on CPU) and checkpoint (ms). */
  graceMs?: number;
  keepAliveMs?: number;
}

const STDERR_TAIL_LINES = 40;

function inActivity(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

export interface EngineCommand {
  args: string[];
  /** Added to the worker's environment. */
  env: Record<string, string>;
}

/**
 * `python -m engine ARGS`, or for several processes torchrun starting that many engines on this
 * machine. Their CPU threads share the cores (OMP_NUM_THREADS, which torch also reads), so N
 * processes do not each take every core; an OMP_NUM_THREADS set by the operator wins.
 */
export function engineCommand(
  args: string[],
  processes = 1,
  env: NodeJS.ProcessEnv = process.env,
  cores = availableParallelism(),
): EngineCommand {
  if (processes <= 1) return { args: ['-m', 'engine', ...args], env: {} };
  // torchrun gives its processes this long after SIGTERM to checkpoint: the grace less a margin, so a
  // slow step's checkpoint is written before the activity kills the group.
  const shutdownSeconds = Math.max(10, Math.floor(DEFAULT_GRACE_MS / 1000) - 10);
  return {
    args: [
      '-m',
      'torch.distributed.run',
      '--standalone',
      `--nproc-per-node=${processes}`,
      `--shutdown-timeout=${shutdownSeconds}`,
      '-m',
      'engine',
      ...args,
    ],
    env: { OMP_NUM_THREADS: env.OMP_NUM_THREADS ?? String(Math.max(1, Math.floor(cores / processes))) },
  };
}

/** Runs the engine to completion; events reach the caller through onEvent as they arrive. */
export async function runEngine(options: EngineRunOptions): Promise<void> {
  const ctx = inActivity();
  const command = engineCommand(options.args, options.processes);
  const child = spawn(options.python ?? enginePython(), command.args, {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE ?? '1', PYTHONUNBUFFERED: '1', ...command.env },
  });
  const stderrTail: string[] = [];
  let engineError: Extract<EngineEvent, { event: 'error' }> | undefined;
  const beat = () => ctx?.heartbeat(options.heartbeatDetails());

  // The first event that breaks the contract: the engine and this code disagree, which no retry fixes by itself.
  let contractBreach: string | undefined;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      stderrTail.push(line); // a stray print, not an event
      return;
    }
    const parsed = EngineEvent.safeParse(value);
    if (!parsed.success) {
      contractBreach ??= `the engine printed an event that breaks its contract (schemas/engine.ts): ${line.slice(0, 300)}\n${z.prettifyError(parsed.error)}`;
      return;
    }
    if (parsed.data.event === 'error') engineError = parsed.data;
    options.onEvent(parsed.data);
    beat();
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderrTail.push(line);
    if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
  });

  // Heartbeats need the event loop, which the engine's silent phases (loading, evaluation) leave free.
  // A few beats per heartbeat timeout, so one late timer tick never costs the attempt.
  const keepAliveMs = options.keepAliveMs ?? Math.min(10_000, (ctx?.info.heartbeatTimeoutMs || 60_000) / 4);
  const keepAlive = setInterval(beat, keepAliveMs);
  let killTimer: NodeJS.Timeout | undefined;
  const onCancel = () => {
    killGroup(child.pid!, 'SIGTERM');
    killTimer = setTimeout(() => killGroup(child.pid!, 'SIGKILL'), options.graceMs ?? DEFAULT_GRACE_MS);
  };
  ctx?.cancellationSignal.addEventListener('abort', onCancel);
  try {
    const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
    if (ctx?.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
    if (contractBreach) throw ApplicationFailure.retryable(contractBreach, ErrorTypes.engineCrash);
    if (code === EngineExit.ok) return;
    const message = engineError?.message ?? `engine exited with ${code ?? signal}: ${stderrTail.slice(-10).join('\n')}`;
    // torchrun exits 1 whatever its processes did; the error event says what happened.
    const exitCode = engineError ? engineErrorKinds[engineError.kind] : code;
    const type = (exitCode !== null && errorTypeForExit[exitCode]) || ErrorTypes.engineCrash;
    if (isNonRetryable(type)) throw ApplicationFailure.nonRetryable(message, type);
    throw ApplicationFailure.retryable(`${message}\n${stderrTail.join('\n')}`.slice(0, 4000), type);
  } finally {
    clearInterval(keepAlive);
    if (killTimer) clearTimeout(killTimer);
    ctx?.cancellationSignal.removeEventListener('abort', onCancel);
    killGroup(child.pid!, 'SIGKILL');
  }
}

/** Runs an engine subcommand to its `done` event, heartbeating `{ phase }`; returns that event's metrics, checked against `schema`. */
export async function engineMetrics<T>(args: string[], phase: string, schema: z.ZodType<T>): Promise<T> {
  const done = await engineEvent(args, phase, 'done');
  const parsed = schema.safeParse(done.metrics);
  if (!parsed.success) throw new Error(`engine ${args[0]}: its done metrics break the contract: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** Runs an engine subcommand to completion and returns the last event of one kind (an error when it printed none). */
export async function engineEvent<K extends EngineEvent['event']>(args: string[], phase: string, kind: K): Promise<EngineEventOf<K>> {
  let found: EngineEventOf<K> | undefined;
  const isWanted = (event: EngineEvent): event is EngineEventOf<K> => event.event === kind;
  await runEngine({
    args,
    heartbeatDetails: () => ({ phase }),
    onEvent: (event) => {
      if (isWanted(event)) found = event;
    },
  });
  if (!found) throw new Error(`engine ${args[0]} exited cleanly without a ${kind} event`);
  return found;
}
