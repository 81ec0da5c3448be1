import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ArtifactStore, artifactPath, canonicalJson } from '../../activities/artifacts';
import { readRows, writeRows } from '../../activities/data/arrow-io';
import { runCachedStep, stepKey } from '../../activities/steps';
import { tempDir } from '../integration/harness';

describe('artifact store', () => {
  it('addresses content by hash: the same bytes give the same reference', async () => {
    const store = new ArtifactStore(tempDir());
    const a = await store.put('hello\n', '.txt', null);
    const b = await store.put('hello\n', '.txt', null);
    expect(a).toEqual(b);
    expect(a.sha256).toBe('5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03');
    expect(readFileSync(artifactPath(a), 'utf8')).toBe('hello\n');
  });

  it('round-trips rows through Arrow IPC, nulls included', async () => {
    const store = new ArtifactStore(tempDir());
    const rows = [
      { id: 'a', sourceRow: 1, question: 'q?', answer: 'é ✓', category: null, product: 'P', fact: null, groupId: 'a' },
      { id: 'b', sourceRow: 2, question: 'q2', answer: 'x', category: 'c', product: null, fact: 'f', groupId: 'a' },
    ];
    const ref = await writeRows(store, rows);
    expect(ref.rows).toBe(2);
    expect(await readRows(store, ref)).toEqual(rows);
  });

  it('keys steps on config, inputs and code, with key order irrelevant', () => {
    const input = { uri: 'file:///x', sha256: 'a'.repeat(64), bytes: 1, rows: 1 };
    const key = (step: string, config: object, code = 'v1') => stepKey({ step, config, inputs: [input], code });
    expect(key('clean', { a: 1, b: 2 })).toBe(key('clean', { b: 2, a: 1 }));
    expect(key('clean', { a: 1 })).not.toBe(key('clean', { a: 2 }));
    expect(key('clean', { a: 1 })).not.toBe(key('dedup', { a: 1 }));
    expect(key('clean', { a: 1 })).not.toBe(key('clean', { a: 1 }, 'v2'));
    expect(stepKey({ step: 'clean', config: {}, inputs: [{ ...input, sha256: 'b'.repeat(64) }], code: 'v1' })).not.toBe(key('clean', {}));
    expect(canonicalJson({ b: [1, { d: 1, c: 2 }], a: null })).toBe('{"a":null,"b":[1,{"c":2,"d":1}]}');
  });

  it('reuses a cached step only while its outputs still hash right', async () => {
    const store = new ArtifactStore(tempDir());
    let runs = 0;
    const compute = async () => {
      runs++;
      return { outputs: { out: await store.put(`result ${runs}`, '.txt', null) }, stats: { runs } };
    };
    const spec = { step: 's', config: {}, inputs: [], code: 'v1', summarize: (s: { runs: number }) => `computed ${s.runs} time(s)` };
    const first = await runCachedStep(store, spec, compute);
    const second = await runCachedStep(store, spec, compute);
    expect([first.reused, second.reused, runs]).toEqual([false, true, 1]);
    // A reused result says its own summary and records the code version it was computed with.
    expect([second.summary, second.codeVersion, second.attempt]).toEqual(['computed 1 time(s)', 'v1', 1]);
    writeFileSync(artifactPath(first.outputs.out), 'tampered');
    const third = await runCachedStep(store, spec, compute);
    expect([third.reused, runs]).toEqual([false, 2]);
    const forced = await runCachedStep(store, { ...spec, noCache: true }, compute);
    expect([forced.reused, runs]).toEqual([false, 3]);
    const newCode = await runCachedStep(store, { ...spec, code: 'v2' }, compute);
    expect([newCode.reused, runs]).toEqual([false, 4]);
  });
});
