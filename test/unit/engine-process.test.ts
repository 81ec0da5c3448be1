import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { engineCommand, runEngine } from '../../activities/engine-process';
import { chooseResumePoint } from '../../activities/train';
import type { EngineEvent } from '../../schemas/engine';
import { EngineExit, NON_RETRYABLE_ERROR_TYPES, errorTypeForExit, isNonRetryable } from '../../schemas/errors';
import { tempDir } from '../integration/harness';

const fakeEngine = join(import.meta.dirname, '..', 'fixtures', 'fake-engine.sh');

async function runFake(mode: string, env = new MockActivityEnvironment()) {
  process.env.FAKE_ENGINE_MODE = mode;
  const events: EngineEvent[] = [];
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => heartbeats.push(d));
  const outcome = await env
    .run(() =>
      runEngine({ args: ['train'], python: fakeEngine, onEvent: (e) => events.push(e), heartbeatDetails: () => ({ n: events.length }) }),
    )
    .then(
      () => undefined,
      (err: unknown) => err,
    );
  return { outcome, events, heartbeats };
}

describe('engine process wrapper', () => {
  it('parses events, ignores other lines and heartbeats on each event', async () => {
    const { outcome, events, heartbeats } = await runFake('ok');
    expect(outcome).toBeUndefined();
    expect(events.map((e) => e.event)).toEqual(['start', 'step', 'done']);
    expect(heartbeats).toContainEqual({ n: 3 });
  });

  it.each([
    ['config', 'ConfigError', 'training.batchSize: must be positive'],
    ['data', 'DataError', 'data.train: no rows'],
    ['parity', 'ParityError', 'parity: prompt 1 of 4 differs at new token 3'],
  ])('maps a %s error to a non-retryable failure with the engine message', async (mode, type, message) => {
    const { outcome } = await runFake(mode);
    expect(outcome).toBeInstanceOf(ApplicationFailure);
    expect(outcome).toMatchObject({ type, message, nonRetryable: true });
  });

  it("takes the failure's kind from the error event when the exit code cannot say it (torchrun exits 1)", async () => {
    const { outcome } = await runFake('torchrun-config');
    expect(outcome).toMatchObject({ type: 'ConfigError', message: 'training.batchSize: must be positive', nonRetryable: true });
  });

  it('maps a crash to a retryable failure carrying the stderr tail', async () => {
    const { outcome } = await runFake('crash');
    expect(outcome).toMatchObject({ type: 'EngineCrash', nonRetryable: false });
    expect((outcome as Error).message).toContain('Traceback: out of memory');
  });

  it('fails the attempt when an event breaks the contract, instead of dropping it as a log line', async () => {
    const { outcome, events } = await runFake('bad-event');
    expect(outcome).toMatchObject({ type: 'EngineCrash', nonRetryable: false });
    expect((outcome as Error).message).toMatch(/breaks its contract.*"loss":"low"/s);
    expect(events.map((e) => e.event)).toEqual(['start', 'step']);
  });

  it('maps exit codes through the shared error list: user errors are final, a crash is retried', () => {
    for (const [code, type] of Object.entries(errorTypeForExit)) {
      expect(isNonRetryable(type)).toBe(Number(code) !== EngineExit.crash);
    }
    expect(NON_RETRYABLE_ERROR_TYPES).toEqual(['ConfigError', 'DataError', 'ParityError']);
  });

  it('on cancellation sends SIGTERM so the engine checkpoints, then rethrows the cancellation', async () => {
    const mark = join(tempDir(), 'terminated');
    process.env.FAKE_ENGINE_MARK = mark;
    const env = new MockActivityEnvironment();
    const running = runFake('hang', env);
    await new Promise((r) => setTimeout(r, 500));
    env.cancel('CANCELLED');
    const { outcome, events } = await running;
    expect(outcome).toBeInstanceOf(CancelledFailure);
    expect(readFileSync(mark, 'utf8').trim()).toBe('terminated');
    expect(events.at(-1)).toMatchObject({ event: 'checkpoint', step: 1 });
  });
});

describe('engine command line', () => {
  it('runs the engine alone for one process', () => {
    expect(engineCommand(['train', '--spec', 's.json'], 1, {}, 16)).toEqual({
      args: ['-m', 'engine', 'train', '--spec', 's.json'],
      env: {},
    });
  });

  it('runs N engines under torchrun for N processes, sharing the cores between them', () => {
    const command = engineCommand(['train', '--spec', 's.json'], 3, {}, 16);
    expect(command.args).toEqual([
      '-m',
      'torch.distributed.run',
      '--standalone',
      '--nproc-per-node=3',
      '--shutdown-timeout=110',
      '-m',
      'engine',
      'train',
      '--spec',
      's.json',
    ]);
    expect(command.env).toEqual({ OMP_NUM_THREADS: '5' });
    expect(engineCommand(['train'], 4, {}, 2).env).toEqual({ OMP_NUM_THREADS: '1' });
    expect(engineCommand(['train'], 2, { OMP_NUM_THREADS: '6' }, 16).env).toEqual({ OMP_NUM_THREADS: '6' });
  });
});

describe('resume point', () => {
  function checkpoint(workDir: string, step: number, complete: boolean): string {
    const dir = join(workDir, 'checkpoints', `step-${step}`);
    mkdirSync(dir, { recursive: true });
    if (complete) writeFileSync(join(dir, 'complete'), '{}');
    return dir;
  }

  it('takes the newest complete checkpoint from the folder, skipping one whose write never finished', () => {
    const work = tempDir();
    checkpoint(work, 4, true);
    const eight = checkpoint(work, 8, true);
    checkpoint(work, 12, false); // killed mid-write: no `complete` marker
    expect(chooseResumePoint(work, undefined)).toEqual({ path: eight, step: 8 });
    expect(chooseResumePoint(tempDir(), undefined)).toBeUndefined();
  });

  it('trusts the folder over a stale heartbeat, and a valid newer hint over the folder', () => {
    const work = tempDir();
    const four = checkpoint(work, 4, true);
    const eight = checkpoint(work, 8, true);
    // The heartbeat's `step` runs ahead of its checkpoint; only checkpointStep says what the checkpoint holds.
    expect(chooseResumePoint(work, { step: 11, checkpoint: four, checkpointStep: 4 })).toEqual({ path: eight, step: 8 });
    expect(chooseResumePoint(work, { step: 9, checkpoint: eight, checkpointStep: 8 })).toEqual({ path: eight, step: 8 });
    expect(chooseResumePoint(work, { step: 12, checkpoint: join(work, 'gone'), checkpointStep: 12 })).toEqual({ path: eight, step: 8 });
  });

  it('never resumes past the stop point: a rung is reached from the newest checkpoint at or before it', () => {
    const work = tempDir();
    const four = checkpoint(work, 4, true);
    const eight = checkpoint(work, 8, true);
    const twelve = checkpoint(work, 12, true);
    expect(chooseResumePoint(work, undefined, 10)).toEqual({ path: eight, step: 8 });
    expect(chooseResumePoint(work, undefined, 8)).toEqual({ path: eight, step: 8 });
    expect(chooseResumePoint(work, { step: 13, checkpoint: twelve, checkpointStep: 12 }, 6)).toEqual({ path: four, step: 4 });
    expect(chooseResumePoint(work, undefined, 3)).toBeUndefined();
    expect(chooseResumePoint(work, undefined, 24)).toEqual({ path: twelve, step: 12 });
  });
});
