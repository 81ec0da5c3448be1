/**
 * Runs one `python -m engine ...` command as an activity's child: in its own process group (so
 * every process it starts dies with it), events parsed from stdout, heartbeats from events plus a
 * keep-alive, cancellation turned into SIGTERM (the engine checkpoints) and SIGKILL after a grace
 * period, and exit codes mapped to retryable or non-retryable failures.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { EngineEvent, EngineExit } from '../schemas/engine';

const projectRoot = resolve(import.meta.dirname, '..');

export function enginePython(): string {
  return process.env.TUNELINE_PYTHON ?? join(projectRoot, '.venv', 'bin', 'python');
}

export interface EngineRunOptions {
  args: string[];
  /** The interpreter; the project's virtual environment by default. */
  python?: string;
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

/** Runs the engine to completion; events reach the caller through onEvent as they arrive. */
export async function runEngine(options: EngineRunOptions): Promise<void> {
  const ctx = inActivity();
  const child = spawn(options.python ?? enginePython(), ['-m', 'engine', ...options.args], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE ?? '1', PYTHONUNBUFFERED: '1' },
  });
  const stderrTail: string[] = [];
  let engineError: Extract<EngineEvent, { event: 'error' }> | undefined;
  const beat = () => ctx?.heartbeat(options.heartbeatDetails());

  createInterface({ input: child.stdout! }).on('line', (line) => {
    let parsed: ReturnType<typeof EngineEvent.safeParse> | undefined;
    try {
      parsed = EngineEvent.safeParse(JSON.parse(line));
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success) {
      stderrTail.push(line);
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
    killTimer = setTimeout(() => killGroup(child.pid!, 'SIGKILL'), options.graceMs ?? 120_000);
  };
  ctx?.cancellationSignal.addEventListener('abort', onCancel);
  try {
    const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
    if (ctx?.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
    if (code === EngineExit.ok) return;
    const message = engineError?.message ?? `engine exited with ${code ?? signal}: ${stderrTail.slice(-10).join('\n')}`;
    if (code === EngineExit.config) throw ApplicationFailure.nonRetryable(message, 'ConfigError');
    if (code === EngineExit.data) throw ApplicationFailure.nonRetryable(message, 'DataError');
    if (code === EngineExit.parity) throw ApplicationFailure.nonRetryable(message, 'ParityError');
    throw ApplicationFailure.retryable(`${message}\n${stderrTail.join('\n')}`.slice(0, 4000), 'EngineCrash');
  } finally {
    clearInterval(keepAlive);
    if (killTimer) clearTimeout(killTimer);
    ctx?.cancellationSignal.removeEventListener('abort', onCancel);
    killGroup(child.pid!, 'SIGKILL');
  }
}

/** Runs an engine subcommand to its `done` event, heartbeating `{ phase }`; returns that event's metrics. */
export async function engineMetrics(args: string[], phase: string): Promise<Record<string, number | null>> {
  let done: Extract<EngineEvent, { event: 'done' }> | undefined;
  await runEngine({
    args,
    heartbeatDetails: () => ({ phase }),
    onEvent: (event) => {
      if (event.event === 'done') done = event;
    },
  });
  if (!done) throw new Error(`engine ${args[0]} exited cleanly without a done event`);
  return done.metrics;
}
