import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { ArtifactStore } from '../../activities/artifacts';
import { CheckpointMirror, restoreCheckpoint } from '../../activities/checkpoint-mirror';
import { newestMirror } from '../../activities/train';
import type { MirroredCheckpoint } from '../../schemas/manifests';
import { tempDir } from '../integration/harness';

/** A work folder as the engine leaves it: complete step checkpoints, `best/` from `bestStep`, an events log. */
function workFolder(steps: number[], bestStep: number): string {
  const workDir = tempDir();
  const write = (folder: string, files: Record<string, string>) => {
    mkdirSync(folder, { recursive: true });
    for (const [name, text] of Object.entries(files)) writeFileSync(join(folder, name), text);
  };
  for (const step of steps) write(join(workDir, 'checkpoints', `step-${step}`), { 'weights.safetensors': `weights ${step}`, complete: '' });
  write(join(workDir, 'checkpoints', 'best'), { 'best.json': JSON.stringify({ step: bestStep }), complete: '' });
  writeFileSync(join(workDir, 'events.jsonl'), '{"event":"checkpoint"}\n');
  return workDir;
}

function mirrorOf(store: ArtifactStore, workDir: string) {
  const mirrored: MirroredCheckpoint[] = [];
  const warnings: string[] = [];
  const mirror = new CheckpointMirror(
    store,
    workDir,
    (m) => void mirrored.push(m),
    (w) => warnings.push(w),
  );
  return { mirror, mirrored, warnings };
}

describe('checkpoint mirror', () => {
  it('copies a checkpoint with its best weights and events log, and restores it into an empty work folder', async () => {
    const store = new ArtifactStore(tempDir());
    const workDir = workFolder([4], 4);
    const { mirror, mirrored, warnings } = mirrorOf(store, workDir);
    mirror.offer(join(workDir, 'checkpoints', 'step-4'), 4);
    await mirror.stop();
    expect(warnings).toEqual([]);
    expect(mirrored.map((m) => m.step)).toEqual([4]);
    // The engine's folder is untouched: the copy went to the store.
    expect(readFileSync(join(workDir, 'checkpoints', 'step-4', 'weights.safetensors'), 'utf8')).toBe('weights 4');

    const elsewhere = tempDir();
    const restored = await restoreCheckpoint(store, elsewhere, mirrored[0]!, undefined);
    expect(restored).toBe(join(elsewhere, 'checkpoints', 'step-4'));
    expect(readFileSync(join(restored!, 'weights.safetensors'), 'utf8')).toBe('weights 4');
    expect(existsSync(join(restored!, 'complete'))).toBe(true);
    expect(JSON.parse(readFileSync(join(elsewhere, 'checkpoints', 'best', 'best.json'), 'utf8'))).toEqual({ step: 4 });
    expect(readFileSync(join(elsewhere, 'events.jsonl'), 'utf8')).toBe('{"event":"checkpoint"}\n');
  });

  it('leaves a work folder alone that already has the checkpoint or a newer one', async () => {
    const store = new ArtifactStore(tempDir());
    const workDir = workFolder([4], 4);
    const { mirror, mirrored } = mirrorOf(store, workDir);
    mirror.offer(join(workDir, 'checkpoints', 'step-4'), 4);
    await mirror.stop();
    expect(await restoreCheckpoint(store, workDir, mirrored[0]!, 4)).toBeUndefined();
    expect(await restoreCheckpoint(store, workDir, mirrored[0]!, 8)).toBeUndefined();
  });

  it('leaves out best weights newer than the checkpoint: they belong to a later point of the run', async () => {
    const store = new ArtifactStore(tempDir());
    const workDir = workFolder([4], 8);
    const { mirror, mirrored } = mirrorOf(store, workDir);
    mirror.offer(join(workDir, 'checkpoints', 'step-4'), 4);
    await mirror.stop();
    const elsewhere = tempDir();
    await restoreCheckpoint(store, elsewhere, mirrored[0]!, undefined);
    expect(readdirSync(join(elsewhere, 'checkpoints'))).toEqual(['step-4']);
  });

  it('uploads one at a time and skips a checkpoint superseded while another was uploading', async () => {
    const store = new ArtifactStore(tempDir());
    const workDir = workFolder([4, 8, 12], 4);
    const { mirror, mirrored } = mirrorOf(store, workDir);
    for (const step of [4, 8, 12]) mirror.offer(join(workDir, 'checkpoints', `step-${step}`), step);
    await vi.waitFor(() => expect(mirrored.map((m) => m.step)).toEqual([4, 12]));
    await mirror.stop();
    expect(mirrored.map((m) => m.step)).toEqual([4, 12]);
  });

  it('uploads nothing more once stopped: the step has ended', async () => {
    const store = new ArtifactStore(tempDir());
    const workDir = workFolder([4, 8], 4);
    const { mirror, mirrored } = mirrorOf(store, workDir);
    mirror.offer(join(workDir, 'checkpoints', 'step-4'), 4);
    mirror.offer(join(workDir, 'checkpoints', 'step-8'), 8);
    await mirror.stop();
    mirror.offer(join(workDir, 'checkpoints', 'step-8'), 8);
    await mirror.stop();
    expect(mirrored.map((m) => m.step)).toEqual([4]);
  });

  it('warns about a checkpoint it could not copy and carries on with the next one', async () => {
    const store = new ArtifactStore(tempDir());
    const workDir = workFolder([8], 4);
    const { mirror, mirrored, warnings } = mirrorOf(store, workDir);
    // Pruned by the engine before the mirror got to it.
    mirror.offer(join(workDir, 'checkpoints', 'step-4'), 4);
    await new Promise((done) => setTimeout(done, 50));
    mirror.offer(join(workDir, 'checkpoints', 'step-8'), 8);
    await mirror.stop();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^checkpoint of step 4 not copied to the bucket \(the next one will be\): .*ENOENT/);
    expect(mirrored.map((m) => m.step)).toEqual([8]);
  });

  it('copies the checkpoint a call paused at once the engine has exited, after it stopped taking offers', async () => {
    const store = new ArtifactStore(tempDir());
    const workDir = workFolder([4, 8], 8);
    const { mirror, mirrored } = mirrorOf(store, workDir);
    await mirror.finish(join(workDir, 'checkpoints', 'step-8'), 8);
    mirror.offer(join(workDir, 'checkpoints', 'step-4'), 4);
    await mirror.stop();
    expect(mirrored.map((m) => m.step)).toEqual([8]);
  });

  it("resumes from the newest copy at or before where the call stops, the heartbeat's or the bucket's", () => {
    const ref = { uri: 's3://b/objects/x.dir', sha256: 'a'.repeat(64), bytes: 1, rows: null };
    const at = (step: number) => ({ ref, step });
    expect(newestMirror([at(4), at(12)])).toEqual(at(12));
    expect(newestMirror([at(12), at(4)], 8)).toEqual(at(4));
    expect(newestMirror([undefined, null])).toBeUndefined();
    expect(newestMirror([at(12)], 8)).toBeUndefined();
  });
});
