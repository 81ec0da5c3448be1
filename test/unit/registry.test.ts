import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  checkUnchanged,
  dataFingerprint,
  modelConfigHash,
  movePointer,
  promoteModel,
  promotionOf,
  promotionRefusal,
  readProduction,
  readRegistryLog,
} from '../../activities/registry';
import { PipelineConfig } from '../../schemas/config';
import type { ArtifactRef, RunManifest } from '../../schemas/manifests';
import { tempDir } from '../integration/harness';

const ref = (sha: string): ArtifactRef => ({ uri: `file:///store/${sha}`, sha256: sha.padEnd(64, '0'), bytes: 1, rows: null });
const config = (extra: object = {}) =>
  PipelineConfig.parse({ name: 'shop', data: { sample: { rows: 10 } }, storage: { registry: 'reg' }, ...extra });

const manifest = (over: Partial<RunManifest>): RunManifest =>
  ({
    runId: 'shop-1',
    pipeline: 'shop',
    status: 'completed',
    outcome: 'candidate',
    config: { file: null, hash: 'c1', given: {}, resolved: config() },
    data: { path: null, snapshot: true, source: ref('d1') },
    gate: { verdict: 'candidate', system: 'tuned', results: [], reasons: [] },
    artifacts: { onnx: ref('m1') },
    ...over,
  }) as RunManifest;

describe('the model registry', () => {
  it('moves the production pointer, logging each move with what it replaced', async () => {
    const folder = tempDir();
    expect(readProduction(folder)).toBeNull();
    const base = {
      pipeline: 'shop',
      model: ref('m1'),
      dataset: 'd',
      configHash: 'c',
      modelConfig: 'x',
      verdict: null,
      forced: false,
      by: 'ana@host',
    };
    await movePointer(folder, { ...base, action: 'promote', runId: 'r1', reason: 'first' });
    await movePointer(folder, { ...base, action: 'promote', runId: 'r2', reason: 'second', forced: true });
    expect(readProduction(folder)).toMatchObject({ runId: 'r2', previous: 'r1', forced: true, reason: 'second' });
    expect(readRegistryLog(folder).map((e) => [e.runId, e.previous])).toEqual([
      ['r1', null],
      ['r2', 'r1'],
    ]);
    // Concurrent movers take turns: every move is logged, each naming the one before it.
    await Promise.all(['a', 'b', 'c'].map((id) => movePointer(folder, { ...base, action: 'promote', runId: id, reason: id })));
    const log = readRegistryLog(folder);
    expect(log).toHaveLength(5);
    for (let n = 1; n < log.length; n++) expect(log[n]!.previous).toBe(log[n - 1]!.runId);
  });

  it('refuses to promote what did not pass its gates, or has no model to serve', () => {
    expect(promotionRefusal(manifest({}))).toBeNull();
    expect(
      promotionRefusal(
        manifest({ gate: { verdict: 'not-promoted', system: 'tuned', results: [], reasons: ['rougeL >= 0.5: tuned 0.4'] } }),
      ),
    ).toBe("run shop-1's gates did not pass (not-promoted: rougeL >= 0.5: tuned 0.4)");
    expect(promotionRefusal(manifest({ gate: null }))).toContain('(not evaluated)');
    expect(promotionRefusal(manifest({ artifacts: {} }))).toContain('has no exported model');
    expect(promotionRefusal(manifest({ status: 'failed' }))).toContain('is failed, not completed');
  });

  it("promotes a run's model once however often the activity is retried, and knows when nothing changed", async () => {
    const configDir = tempDir();
    const context = { config: config(), configDir };
    const input = { context, runId: 'shop-1', onnx: ref('m1'), dataset: 'd1', configHash: 'c1' };
    await promoteModel(input);
    await promoteModel(input);
    expect(readRegistryLog(join(configDir, 'reg', 'shop'))).toHaveLength(1);
    expect(await checkUnchanged({ context, dataset: 'd1' })).toEqual({ unchanged: true, production: 'shop-1' });
    expect(await checkUnchanged({ context, dataset: 'd2' })).toEqual({ unchanged: false, production: 'shop-1' });
    // Schedules and promotion settle when and whether to promote, not what is trained.
    const scheduled = { ...context, config: config({ schedules: [{ id: 'n', every: '1d' }], promotion: 'manual' }) };
    expect((await checkUnchanged({ context: scheduled, dataset: 'd1' })).unchanged).toBe(true);
    const retuned = { ...context, config: config({ training: { learningRate: 0.0001 } }) };
    expect((await checkUnchanged({ context: retuned, dataset: 'd1' })).unchanged).toBe(false);
    expect(modelConfigHash(config())).not.toBe(modelConfigHash(retuned.config));
  });

  it('counts a new feedback or knowledge file as new data, for a scheduled run and for a promotion by hand alike', async () => {
    const configDir = tempDir();
    const d1 = ref('d1').sha256; // the source of `manifest`
    const context = { config: config({ data: { sample: { rows: 10 }, feedback: [{ path: 'feedback.jsonl' }] } }), configDir };
    const files = (feedback: string, knowledge?: string) => [
      { step: 'split', stats: { counts: { train: 8 } } },
      { step: 'feedback', stats: { files: [{ path: 'feedback.jsonl', sha256: feedback }], rows: 2, trainRows: 10 } },
      ...(knowledge ? [{ step: 'knowledge', stats: { files: [{ path: 'faq.csv', sha256: knowledge }], rows: 3 } }] : []),
    ];
    await promoteModel({ context, runId: 'shop-1', onnx: ref('m1'), dataset: d1, dataFiles: files('f1'), configHash: 'c1' });
    expect(await checkUnchanged({ context, dataset: d1, dataFiles: files('f1') })).toEqual({ unchanged: true, production: 'shop-1' });
    expect((await checkUnchanged({ context, dataset: d1, dataFiles: files('f2') })).unchanged).toBe(false);
    expect((await checkUnchanged({ context, dataset: d1, dataFiles: files('f1', 'k1') })).unchanged).toBe(false);
    expect((await checkUnchanged({ context, dataset: 'd2', dataFiles: files('f1') })).unchanged).toBe(false);

    // Without such files the fingerprint is the source's hash, as registries recorded before files counted.
    expect(dataFingerprint(d1, [])).toBe(d1);
    expect(dataFingerprint(d1, files('f1'))).not.toBe(d1);
    // A promotion by hand reads the same hashes from the run manifest's step records.
    const steps = files('f1').map((s) => ({ ...s, stage: 'data' })) as unknown as RunManifest['steps'];
    const event = promotionOf(manifest({ steps }), { action: 'promote', forced: false, reason: 'by hand', by: 'ana@host' });
    expect(event.dataset).toBe(readProduction(join(configDir, 'reg', 'shop'))!.dataset);
    // A knowledge file recorded before its hash was kept is never taken for an unchanged one.
    expect(dataFingerprint(d1, [{ step: 'knowledge', stats: { files: [{ path: 'faq.csv' }], rows: 3 } }])).not.toBe(
      dataFingerprint(d1, files('f1')),
    );
  });
});
