/**
 * Checkpoints in the bucket, for a training whose machine dies. With `storage.artifacts` in a bucket,
 * each checkpoint the engine completes is copied into the store as one folder: the step's checkpoint,
 * the best weights so far (when they are from that step or before it) and the attempt's events log.
 * The ref goes into the activity's heartbeat and is named in the bucket by the work folder's key, so
 * the attempt Temporal retries on another gpu worker, or a later call of the same budget (a sweep
 * trial continued after a rung) on any machine, restores it into its own work folder and resumes
 * there, as it would on the first machine.
 *
 * Uploads run beside the training, one at a time, and always of the newest checkpoint: one that is
 * superseded while another uploads is skipped. An upload that fails (the engine pruned the folder
 * while it was copied, the bucket refused) is logged and the next checkpoint tries again; training
 * never waits for it.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { cp, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ArtifactRef, MirroredCheckpoint } from '../schemas/manifests';
import type { StepStore } from './artifacts';

const EVENTS_FILE = 'events.jsonl';

const checkpointsOf = (workDir: string) => join(workDir, 'checkpoints');

/** The step a complete `best/` folder holds. */
function bestStep(folder: string): number {
  return (JSON.parse(readFileSync(join(folder, 'best.json'), 'utf8')) as { step: number }).step;
}

export class CheckpointMirror {
  private pending: { path: string; step: number } | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: StepStore,
    private readonly workDir: string,
    private readonly onMirrored: (mirrored: MirroredCheckpoint) => void | Promise<void>,
    private readonly warn: (message: string) => void,
  ) {}

  /** A complete checkpoint folder the engine just wrote; uploaded when the mirror is free. */
  offer(path: string, step: number): void {
    if (this.stopped) return;
    this.pending = { path, step };
    this.running ??= this.drain().finally(() => (this.running = undefined));
  }

  /** No more uploads; waits for the one in flight, so nothing runs after the step ends. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.pending = undefined;
    await this.running;
  }

  /**
   * Stops, then copies this checkpoint as the engine left it when it exited: where a call pauses (a
   * rung; the engine adds the rung's evaluation to the checkpoint after announcing it), so the
   * continuation finds it whichever machine it runs on. Errors reach the caller.
   */
  async finish(path: string, step: number): Promise<void> {
    await this.stop();
    await this.onMirrored({ ref: await this.upload(path, step), step });
  }

  private async drain(): Promise<void> {
    while (this.pending && !this.stopped) {
      const { path, step } = this.pending;
      this.pending = undefined;
      try {
        await this.onMirrored({ ref: await this.upload(path, step), step });
      } catch (error) {
        this.warn(`checkpoint of step ${step} not copied to the bucket (the next one will be): ${String(error)}`);
      }
    }
  }

  private async upload(path: string, step: number): Promise<ArtifactRef> {
    const folder = await this.store.tempPath();
    await mkdir(folder, { recursive: true });
    try {
      await copySteady(path, join(folder, `step-${step}`));
      const best = join(checkpointsOf(this.workDir), 'best');
      if (existsSync(join(best, 'complete'))) {
        await copySteady(best, join(folder, 'best'));
        // Newer best weights belong to a later point of the run than this checkpoint; the resumed run re-finds them.
        if (bestStep(join(folder, 'best')) > step) await rm(join(folder, 'best'), { recursive: true, force: true });
      }
      const events = join(this.workDir, EVENTS_FILE);
      if (existsSync(events)) await cp(events, join(folder, EVENTS_FILE));
      return await this.store.putDir(folder);
    } catch (error) {
      await rm(folder, { recursive: true, force: true });
      throw error;
    }
  }
}

/** Each file's path, size, modification time and inode: what changes when the engine rewrites, swaps or prunes a folder. */
function fingerprint(folder: string): string {
  const files = readdirSync(folder, { recursive: true, encoding: 'utf8' }).sort();
  return JSON.stringify(
    files.map((name) => {
      const stat = statSync(join(folder, name));
      return [name, stat.size, stat.mtimeMs, stat.ino];
    }),
  );
}

/**
 * Copies a folder the engine may be changing (it prunes old checkpoints and swaps `best/` in by
 * renaming): the copy counts only when the folder was the same before and after it and is complete.
 */
async function copySteady(source: string, destination: string): Promise<void> {
  const before = fingerprint(source);
  await cp(source, destination, { recursive: true });
  if (fingerprint(source) !== before || !existsSync(join(destination, 'complete')))
    throw new Error(`${source} changed while it was copied`);
}

/**
 * Brings a mirrored checkpoint into a work folder that has none as new (another machine's, or this
 * one's after its disk was lost): the step, the best weights and the events log when the folder has
 * none. Returns the restored checkpoint's path, or undefined when the folder already had it or newer.
 */
export async function restoreCheckpoint(store: StepStore, workDir: string, mirrored: MirroredCheckpoint, localNewest: number | undefined) {
  if (localNewest !== undefined && localNewest >= mirrored.step) return undefined;
  const source = await store.fetch(mirrored.ref);
  const checkpoints = checkpointsOf(workDir);
  await mkdir(checkpoints, { recursive: true });
  const destination = join(checkpoints, `step-${mirrored.step}`);
  await rm(destination, { recursive: true, force: true });
  await cp(join(source, `step-${mirrored.step}`), destination, { recursive: true });
  if (existsSync(join(source, 'best'))) {
    await rm(join(checkpoints, 'best'), { recursive: true, force: true });
    await cp(join(source, 'best'), join(checkpoints, 'best'), { recursive: true });
  }
  if (!existsSync(join(workDir, EVENTS_FILE)) && existsSync(join(source, EVENTS_FILE)))
    await cp(join(source, EVENTS_FILE), join(workDir, EVENTS_FILE));
  return destination;
}
