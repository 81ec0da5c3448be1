/**
 * `tuneline audit verify`'s core: every artifact a manifest names, once, with every place it is
 * named; and each hashed again (files and folders as the store hashes them): intact, changed or missing.
 * `tuneline runs list`'s filters as a visibility query.
 */
import { appendFileSync, chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArtifactStore, artifactPath } from '../../activities/artifacts';
import { manifestArtifacts, verifyArtifacts } from '../../cli/audit';
import { runsQuery } from '../../cli/commands/runs';
import { UserError } from '../../cli/config';
import type { ArtifactRef, RunManifest } from '../../schemas/manifests';
import { tempDir } from '../integration/harness';

const step = (name: string, inputs: ArtifactRef[], outputs: Record<string, ArtifactRef>) =>
  ({ step: name, inputs, outputs }) as unknown as RunManifest['steps'][number];

describe('audit verify', () => {
  it('names each artifact once, with every place the manifest names it', async () => {
    const store = new ArtifactStore(tempDir());
    const [source, train, report] = await Promise.all([
      store.put('a', '.csv', 1),
      store.put('b', '.arrow', 1),
      store.put('c', '.md', null),
    ]);
    const manifest = {
      data: { path: null, snapshot: true, source },
      steps: [step('ingest', [source], { rows: train }), step('report', [train], { markdown: report })],
      artifacts: { 'source-data': source, 'train.arrow': train, 'data-report.md': report },
    } as unknown as RunManifest;
    expect(manifestArtifacts(manifest).map((a) => [a.ref.sha256, a.names])).toEqual([
      [source.sha256, ['data.source', 'steps.ingest.inputs[0]', 'artifacts.source-data']],
      [train.sha256, ['steps.ingest.outputs.rows', 'steps.report.inputs[0]', 'artifacts.train.arrow']],
      [report.sha256, ['steps.report.outputs.markdown', 'artifacts.data-report.md']],
    ]);
  });

  it('finds a changed file, a changed folder and a missing file; the rest intact', async () => {
    const store = new ArtifactStore(tempDir());
    const folder = join(tempDir(), 'model');
    mkdirSync(folder);
    writeFileSync(join(folder, 'weights.bin'), 'w');
    const [file, gone, kept, dir] = [
      await store.put('one', '.txt', null),
      await store.put('two', '.txt', null),
      await store.put('three', '.txt', null),
      await store.putDir(folder),
    ];
    chmodSync(artifactPath(file), 0o644);
    appendFileSync(artifactPath(file), '!');
    rmSync(artifactPath(gone));
    writeFileSync(join(artifactPath(dir), 'extra.txt'), 'x');
    const checks = await verifyArtifacts([file, gone, kept, dir].map((ref, n) => ({ names: [`a${n}`], ref })));
    expect(checks.map((c) => c.status)).toEqual(['changed', 'missing', 'intact', 'changed']);
    expect(checks[0]!.found).toMatch(/^[0-9a-f]{64}$/);
    expect(checks[0]!.found).not.toBe(file.sha256);
  });
});

describe('runs list', () => {
  it('turns its filters into one visibility query', () => {
    expect(runsQuery({ pipeline: 'shop', status: 'timed-out', since: '2026-12-01' })).toBe(
      'WorkflowType IN ("finetunePipeline", "sweep") AND TunelinePipeline = "shop" AND ExecutionStatus = "TimedOut" AND ' +
        'StartTime >= "2026-12-01T00:00:00.000Z"',
    );
    expect(runsQuery({})).toBe('WorkflowType IN ("finetunePipeline", "sweep")');
    expect(
      runsQuery({
        dataset: 'ab12',
        verdict: 'promoted',
        startedBy: 'schedule shop.nightly',
        baseModel: 'm',
        codeVersion: 'c1',
        config: 'f0',
      }),
    ).toBe(
      'WorkflowType IN ("finetunePipeline", "sweep") AND TunelineDatasetHash = "ab12" AND TunelineConfigHash = "f0" AND ' +
        'TunelineBaseModel = "m" AND TunelineCodeVersion = "c1" AND TunelineVerdict = "promoted" AND TunelineStartedBy = "schedule shop.nightly"',
    );
  });

  it('names every bad filter at once', () => {
    const bad = () => runsQuery({ pipeline: 'Shop"', status: 'done', since: 'yesterday', startedBy: 'x" OR 1=1' });
    expect(bad).toThrow(UserError);
    expect(bad).toThrow(
      /--pipeline Shop".*\n--status done: one of running, completed.*\n--since yesterday: a date.*\n--started-by x" OR 1=1: no quotes/s,
    );
  });
});
