import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, copyFileSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Worker } from '@temporalio/worker';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore, artifactPath, sha256File, sha256Tree } from '../../activities/artifacts';
import { readRows } from '../../activities/data/arrow-io';
import { manifestArtifacts, recordedWorkflows, replayWorkflows, type ArtifactCheck } from '../../cli/audit';
import type { RunListing } from '../../cli/commands/runs';
import { queryProgress, readRunManifest, startPipeline } from '../../cli/client';
import { loadConfigFile } from '../../cli/config';
import { RunManifest } from '../../schemas/manifests';
import { workflowsPath } from '../../workers/create';
import { SearchAttributes, childWorkflowId } from '../../workflows/definitions';
import {
  activityAttempts,
  cliPath,
  killAndWait,
  projectRoot,
  spawnWorker,
  startTestServer,
  tempDir,
  waitFor,
  writePipeline,
  type TestServer,
} from './harness';

/** These tests are about the data stage; training has its own. */
const DATA_ONLY = { stopAfter: 'data' } as const;
/** Reads artifacts by their refs' file URIs (checking their hashes); its own folder stays empty. */
const reader = new ArtifactStore(tempDir());

let env: TestServer;
let worker: ReturnType<typeof spawnWorker>;

beforeAll(async () => {
  env = await startTestServer();
  worker = spawnWorker('cpu', env.server.address);
});

afterAll(async () => {
  if (worker) await killAndWait(worker, 'SIGTERM');
  await env?.close();
});

const samplePipeline = (dir: string, rows = 10_000) =>
  writePipeline(dir, {
    name: 'it-sample',
    data: { sample: { rows, seed: 42 }, columns: { id: 'id', category: 'category', product: 'product', fact: 'fact' } },
  });

describe('finetunePipeline on a real dev server', () => {
  const dir = tempDir();
  const path = samplePipeline(dir);

  it('runs the data stage on the sample data and accounts for every row', async () => {
    const handle = await startPipeline(env.client, loadConfigFile(path), DATA_ONLY);
    const result = await handle.result();
    expect(result.outcome).toBe('data-ready');
    expect(result.steps.map((s) => s.step)).toEqual(['source', 'ingest', 'clean', 'dedup', 'split', 'report']);
    expect(result.steps.every((s) => !s.reused)).toBe(true);

    const report = JSON.parse(readFileSync(artifactPath(result.data.dataReport.json), 'utf8'));
    expect(report.accounting).toMatchObject({ sourceRows: 10_000, balanced: true });
    expect(report.accounting.quarantined).toBeGreaterThan(0);
    expect(report.accounting.removed).toBeGreaterThan(0);
    expect(readFileSync(artifactPath(result.data.dataReport.markdown), 'utf8')).toContain('| stage | rows in | rows out |');

    const train = await readRows(reader, result.data.splits.train);
    const test = await readRows(reader, result.data.splits.test);
    expect(train.length).toBe(result.data.splits.train.rows);
    const trainGroups = new Set(train.map((r) => r.groupId));
    expect(test.some((r) => trainGroups.has(r.groupId))).toBe(false);

    const progress = await queryProgress(handle);
    expect(progress?.stage).toBe('done');
    expect(progress?.steps.every((s) => s.status === 'done')).toBe(true);
    const description = await handle.describe();
    expect(description.typedSearchAttributes.get(SearchAttributes.stage)).toBe('done');
    expect(description.typedSearchAttributes.get(SearchAttributes.pipeline)).toBe('it-sample');
  });

  it('re-runs no step when the config is unchanged, and every step with noCache', async () => {
    const first = await (await startPipeline(env.client, loadConfigFile(path), DATA_ONLY)).result();
    expect(first.steps.filter((s) => !s.reused)).toEqual([]);
    const forced = await (await startPipeline(env.client, loadConfigFile(path), { ...DATA_ONLY, noCache: true })).result();
    expect(forced.steps.filter((s) => s.reused)).toEqual([]);
    expect(forced.data.splits).toEqual(first.data.splits);
  });

  it('re-runs only the steps downstream of a changed setting', async () => {
    const changed = loadConfigFile(path);
    (changed.raw as { split: unknown }).split = { seed: 7 };
    const result = await (await startPipeline(env.client, changed, DATA_ONLY)).result();
    expect(result.steps.filter((s) => !s.reused).map((s) => s.step)).toEqual(['split', 'report']);
  });
});

/** Every file a manifest names, with the hash on disk beside the hash it records. */
async function hashesOnDisk(manifest: RunManifest): Promise<Array<{ uri: string; recorded: string; onDisk: string }>> {
  const refs = [
    ...Object.values(manifest.artifacts),
    ...manifest.steps.flatMap((s) => [...s.inputs, ...Object.values(s.outputs)]),
    ...(manifest.data ? [manifest.data.source] : []),
  ];
  return Promise.all(
    refs.map(async (ref) => {
      const path = artifactPath(ref);
      const onDisk = statSync(path).isDirectory() ? (await sha256Tree(path)).sha256 : await sha256File(path);
      return { uri: ref.uri, recorded: ref.sha256, onDisk };
    }),
  );
}

describe('the run manifest', () => {
  it('records what a run read, made and decided, with hashes that match the files on disk', async () => {
    const dir = tempDir();
    copyFileSync(join(projectRoot, 'test', 'fixtures', 'qa-small.csv'), join(dir, 'qa.csv'));
    const columns = { id: 'qid', question: 'q', answer: 'a', category: 'type' };
    const path = writePipeline(dir, { name: 'it-manifest', data: { path: 'qa.csv', columns, maxInvalidFraction: 0.5 } });
    const handle = await startPipeline(env.client, loadConfigFile(path), { ...DATA_ONLY, command: 'pipeline.test.ts' });
    const result = await handle.result();
    const manifest = readRunManifest(result);
    expect(readFileSync(join(result.runFolder, 'run.json'), 'utf8')).toBe(readFileSync(artifactPath(result.manifest), 'utf8'));
    expect(manifest).toMatchObject({
      runId: handle.workflowId,
      pipeline: 'it-manifest',
      status: 'completed',
      outcome: 'data-ready',
      config: { file: path, hash: loadConfigFile(path).configHash },
      startedBy: { command: 'pipeline.test.ts', cwd: process.cwd() },
      data: { path: join(dir, 'qa.csv'), snapshot: true },
    });
    expect(manifest.code.sources).toMatch(/^[0-9a-f]{16}$/);
    expect(manifest.steps.map((s) => `${s.stage}/${s.step}`)).toEqual([
      'data/source',
      'data/ingest',
      'data/clean',
      'data/dedup',
      'data/split',
      'data/report',
    ]);
    for (const step of manifest.steps)
      expect(step).toMatchObject({ reused: false, attempt: 1, codeVersion: expect.stringMatching(/^[0-9a-f]{16}$/) });
    const hashes = await hashesOnDisk(manifest);
    expect(hashes.length).toBeGreaterThan(15);
    expect(hashes.filter((h) => h.recorded !== h.onDisk)).toEqual([]);

    // The data is proven by its snapshot: changing the user's file later does not change what the manifest points at.
    const original = readFileSync(join(dir, 'qa.csv'));
    expect(manifest.data!.source.uri).not.toContain('qa.csv');
    expect(readFileSync(artifactPath(manifest.data!.source))).toEqual(original);
    writeFileSync(join(dir, 'qa.csv'), 'question,answer\nchanged?,yes\n');
    expect(readFileSync(artifactPath(manifest.data!.source))).toEqual(original);
  });
});

describe('tuneline runs list and audit', () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [cliPath, 'audit', ...args], {
      cwd: projectRoot,
      env: { ...process.env, TEMPORAL_ADDRESS: env.server.address },
      encoding: 'utf8',
      timeout: 120_000,
    });

  it('lists a run by its attributes, replays it with its children, exports its history, and finds tampered and deleted artifacts', async () => {
    const path = samplePipeline(tempDir(), 500);
    const handle = await startPipeline(env.client, loadConfigFile(path), DATA_ONLY);
    const manifest = readRunManifest(await handle.result());
    const runId = handle.workflowId;

    // Listed by its attributes (visibility is eventually consistent: wait for it).
    const listed = (...filters: string[]) => {
      const out = spawnSync(process.execPath, [cliPath, 'runs', 'list', '--json', ...filters], {
        cwd: projectRoot,
        env: { ...process.env, TEMPORAL_ADDRESS: env.server.address },
        encoding: 'utf8',
      });
      return (JSON.parse(out.stdout) as RunListing[]).map((r) => `${r.id} ${r.kind} ${r.pipeline} ${r.status}`);
    };
    await waitFor(
      async () => listed('--pipeline', 'it-sample', '--status', 'completed'),
      (rows) => rows.includes(`${runId} run it-sample completed`),
    );
    expect(listed('--pipeline', 'it-sample', '--status', 'failed')).toEqual([]);
    expect(listed('--pipeline', 'it-manifest', '--since', new Date().toISOString())).toEqual([]);

    const replay = cli('replay', runId);
    expect(replay.status, replay.stderr).toBe(0);
    expect(replay.stdout).toContain(`replays  ${runId} (`);
    expect(replay.stdout).toContain(`replays  ${childWorkflowId.data(runId)} (`);
    expect(replay.stdout).toContain('2 of 2 histories replay against this code.');
    // The same histories against workflow code with an unguarded change: caught, and the event named.
    const recorded = await recordedWorkflows(env.client, runId);
    const changed = await replayWorkflows(recorded, join(projectRoot, 'test', 'fixtures', 'workflows-changed', 'index.ts'));
    const broken = changed.find((o) => o.workflowId === childWorkflowId.data(runId))!;
    expect(broken).toMatchObject({ nondeterministic: true });
    expect(broken.error).toMatch(/ActivityTaskScheduled|activity|Nondeterminism/i);

    const file = join(tempDir(), 'history.json');
    expect(cli('export', runId, '-o', file).status).toBe(0);
    await expect(Worker.runReplayHistory({ workflowsPath }, JSON.parse(readFileSync(file, 'utf8')), runId)).resolves.toBeUndefined();

    const intact = cli('verify', runId);
    expect(intact.status, intact.stderr).toBe(0);
    const count = manifestArtifacts(manifest).length;
    expect(intact.stdout).toContain(`${count} of ${count} artifacts intact.`);
    // One artifact changed, one deleted: both named, exit 1.
    const train = artifactPath(manifest.artifacts['train.arrow']!);
    chmodSync(train, 0o644);
    appendFileSync(train, 'tampered');
    rmSync(artifactPath(manifest.artifacts['data-report.md']!));
    const tampered = cli('verify', join(dirname(path), '.tuneline', 'runs', runId, 'run.json'), '--json');
    expect(tampered.status).toBe(1);
    const checks = (JSON.parse(tampered.stdout) as { checks: ArtifactCheck[] }).checks.filter((c) => c.status !== 'intact');
    expect(
      checks.map((c) => [c.status, c.names.includes('artifacts.train.arrow') || c.names.includes('artifacts.data-report.md')]),
    ).toEqual([
      ['changed', true],
      ['missing', true],
    ]);
    expect(checks[0]!.found).toBe(await sha256File(train));
  });
});

describe('knowledge files', () => {
  const columns = { id: 'qid', question: 'q', answer: 'a', category: 'type' };
  const knowledgePipeline = (dir: string, faq: string) => {
    copyFileSync(join(projectRoot, 'test', 'fixtures', 'qa-small.csv'), join(dir, 'qa.csv'));
    writeFileSync(join(dir, 'faq.csv'), faq);
    return writePipeline(dir, {
      name: 'it-knowledge',
      data: { path: 'qa.csv', columns, maxInvalidFraction: 0.5 },
      retrieval: { method: 'lexical', knowledge: [{ path: 'faq.csv', columns: { question: 'question', answer: 'answer' } }] },
    });
  };

  it('are prepared in the data stage, every row accounted for in the data report and the run folder', async () => {
    const dir = tempDir();
    const faq = [
      'question,answer',
      'How do I pair the Nimbus Buds??,Press the case button for three seconds.', // repeats a data question
      'What is the warranty on the Vireo router?,Two years from purchase.',
      'What is the warranty on the Vireo router?,Two years from purchase.', // duplicate
      'Is the Kestrel watch sold in black?,', // no answer: quarantined
    ].join('\n');
    const handle = await startPipeline(env.client, loadConfigFile(knowledgePipeline(dir, faq)), DATA_ONLY);
    const result = await handle.result();
    expect(result.steps.map((s) => s.step)).toEqual(['source', 'ingest', 'clean', 'dedup', 'split', 'knowledge', 'report']);
    const report = JSON.parse(readFileSync(artifactPath(result.data.dataReport.json), 'utf8'));
    expect(report.knowledge).toHaveLength(1);
    const [file] = report.knowledge;
    expect(file).toMatchObject({
      path: 'faq.csv',
      rowsIn: 4,
      quarantined: 1,
      removedByCleaning: 0,
      duplicates: 1,
      indexed: 1,
      balanced: true,
    });
    expect(file.repeatsData.train + file.repeatsData.validation + file.repeatsData.test).toBe(1);
    expect(readFileSync(artifactPath(result.data.dataReport.markdown), 'utf8')).toContain('## Knowledge files');
    const indexed = await readRows(reader, result.data.knowledge!.rows);
    expect(indexed.map((r) => [r.id, r.question])).toEqual([['k1:row-2', 'What is the warranty on the Vireo router?']]);
    expect(await readRows(reader, { ...result.data.knowledge!.rows, uri: `file://${join(result.runFolder, 'knowledge.arrow')}` })).toEqual(
      indexed,
    );
    const removed = readFileSync(join(result.runFolder, 'knowledge-removed.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(removed.map((r) => r.row.id).sort()).toEqual(['k1:row-1', 'k1:row-3']);
    const quarantined = JSON.parse(readFileSync(join(result.runFolder, 'knowledge-quarantine.jsonl'), 'utf8'));
    expect(quarantined).toMatchObject({ file: 'faq.csv', sourceRow: 4, kind: 'empty' });
  });

  it('a missing knowledge file fails the run with its key and path, after one attempt', async () => {
    const dir = tempDir();
    const path = knowledgePipeline(dir, 'question,answer\nQ?,A.\n');
    const loaded = loadConfigFile(path);
    (loaded.raw as { retrieval: { knowledge: Array<{ path: string }> } }).retrieval.knowledge[0]!.path = 'missing.csv';
    const handle = await startPipeline(env.client, loaded, DATA_ONLY);
    const error = (await handle.result().catch((e: unknown) => e)) as WorkflowFailedError;
    expect(error.cause?.message).toContain(`retrieval.knowledge[0] (missing.csv): file not found: ${join(dir, 'missing.csv')}`);
    expect(await activityAttempts(env.client.workflow.getHandle(childWorkflowId.data(handle.workflowId)))).toMatchObject({
      prepareKnowledgeFiles: 1,
    });
  });
});

describe('feedback files', () => {
  it('add their rows to the training split only, before the knowledge files check repeats against it', async () => {
    const dir = tempDir();
    copyFileSync(join(projectRoot, 'test', 'fixtures', 'qa-small.csv'), join(dir, 'qa.csv'));
    // As `tuneline feedback export -o feedback.jsonl --include-rejected` writes it (fewer columns).
    const rated = (id: string, question: string, answer: unknown, rejected = false) =>
      JSON.stringify({ id, question, answer, rating: rejected ? 'down' : 'up', rejected, modelAnswer: 'Sorry.', comment: '' });
    const repeats = [
      ['f1:c4', 'How do I pair the Nimbus Buds?', 'Hold the case button for three seconds, until the light blinks.'],
      ['f1:c5', 'What is the battery life of the Solace TV remote?', 'About six months on two AAA cells.'],
      ['f1:c6', 'Does the Vireo router support WPA3?', 'Yes, WPA3-Personal and WPA2.'],
      ['f1:c7', "My Lumen laptop won't charge", 'Use a USB-C PD charger of 65 W or more.'],
    ];
    const feedbackFile = join(dir, 'feedback.jsonl');
    writeFileSync(
      feedbackFile,
      [
        rated('c1', 'Does the Nimbus Buds case charge wirelessly?', 'Yes, on any Qi charger.'),
        rated('c2', 'Does the Solace TV remote have a backlight?', 'No, its keys glow in the dark.'),
        rated('c3', 'Is the Kestrel watch waterproof?', '', true),
        ...repeats.map(([id, question, answer]) => rated(id!.slice(3), question!, answer)),
        rated('c8', 'Is the Vireo router mesh ready?', 5), // not text: quarantined
      ].join('\n') + '\n',
    );
    writeFileSync(
      join(dir, 'faq.csv'),
      'question,answer\nDoes the Nimbus Buds case charge wirelessly?,Yes.\nWhat is the warranty on the Vireo router?,Two years.\n',
    );
    const path = writePipeline(dir, {
      name: 'it-feedback',
      data: {
        path: 'qa.csv',
        columns: { id: 'qid', question: 'q', answer: 'a', category: 'type' },
        maxInvalidFraction: 0.5,
        feedback: [{ path: 'feedback.jsonl', columns: { id: 'id', question: 'question', answer: 'answer' } }],
      },
      split: { train: 0.5, validation: 0.25, test: 0.25 },
      retrieval: { method: 'lexical', knowledge: [{ path: 'faq.csv', columns: { question: 'question', answer: 'answer' } }] },
    });
    const result = await (await startPipeline(env.client, loadConfigFile(path), DATA_ONLY)).result();
    expect(result.steps.map((s) => s.step)).toEqual(['source', 'ingest', 'clean', 'dedup', 'split', 'feedback', 'knowledge', 'report']);

    // Validation and test are the data's own; a feedback row asking one of their questions stays out.
    const manifest = readRunManifest(result);
    const split = manifest.steps.find((s) => s.step === 'split')!;
    expect(result.data.splits.validation).toEqual(split.outputs.validation);
    expect(result.data.splits.test).toEqual(split.outputs.test);
    const [dataTrain, validation, test] = await Promise.all(
      ['train', 'validation', 'test'].map((name) => readRows(reader, split.outputs[name]!)),
    );
    expect([dataTrain!.length, validation!.length, test!.length]).toEqual([2, 1, 1]);
    const heldOut = new Set([...validation!, ...test!].map((r) => r.question));
    const added = ['f1:c1', 'f1:c2', ...repeats.filter(([, question]) => !heldOut.has(question!)).map(([id]) => id)];
    expect(added).toHaveLength(4);
    const train = await readRows(reader, result.data.splits.train);
    expect(train.map((r) => r.id)).toEqual([...dataTrain!.map((r) => r.id), ...added]);
    expect(train.find((r) => r.id === 'f1:c1')!.answer).toBe('Yes, on any Qi charger.');
    expect(await readRows(reader, { ...result.data.splits.train, uri: `file://${join(result.runFolder, 'train.arrow')}` })).toEqual(train);

    // Every feedback row accounted for; the file's hash is the step's input, as a knowledge file's is.
    const report = JSON.parse(readFileSync(artifactPath(result.data.dataReport.json), 'utf8'));
    const sha256 = await sha256File(feedbackFile);
    expect(report.feedback).toEqual([
      {
        path: 'feedback.jsonl',
        sha256,
        rowsIn: 8,
        rejected: 1,
        quarantined: 1,
        removedByCleaning: 0,
        duplicates: 0,
        repeatsHeldOut: { validation: 1, test: 1 },
        added: 4,
        balanced: true,
      },
    ]);
    expect(report.trainWithFeedback).toBe(6);
    expect(manifest.steps.find((s) => s.step === 'feedback')!.inputs[0]).toMatchObject({ uri: `file://${feedbackFile}`, sha256 });
    expect(readFileSync(artifactPath(result.data.dataReport.markdown), 'utf8')).toContain(
      'it has 6 rows, 2 from the data and 4 from feedback',
    );
    const removed = readFileSync(join(result.runFolder, 'feedback-removed.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(removed.map((r) => r.row?.id ?? `row ${r.sourceRow}: ${r.reason}`).sort()).toEqual(
      [...repeats.map(([id]) => id!).filter((id) => !added.includes(id)), 'row 3: rejected: rated down without a correction'].sort(),
    );
    const quarantined = JSON.parse(readFileSync(join(result.runFolder, 'feedback-quarantine.jsonl'), 'utf8'));
    expect(quarantined).toMatchObject({ file: 'feedback.jsonl', sourceRow: 8, kind: 'wrong-type' });
    // The knowledge files come after: a FAQ pair that asks a feedback question is a training repeat now.
    expect(report.knowledge[0]).toMatchObject({ repeatsData: { train: 1, validation: 0, test: 0 }, indexed: 1, balanced: true });
  });
});

describe('user errors fail fast and are not retried', () => {
  it('a bad config fails the run with every problem in the failure message', async () => {
    const dir = tempDir();
    const loaded = loadConfigFile(samplePipeline(dir));
    Object.assign(loaded.raw as object, { split: { train: 2 }, training: { strategy: 'qlora' } });
    const handle = await startPipeline(env.client, loaded, DATA_ONLY);
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const message = (error as WorkflowFailedError).cause?.message ?? '';
    expect(message).toContain('split.train');
    expect(message).toContain('training.strategy: expected one of "lora", "full", found string "qlora"');
    expect(await activityAttempts(handle)).toEqual({ validatePipelineConfig: 1, recordRun: 1 });
    // The failed run is recorded too: what it was given, and why it stopped.
    const manifest = RunManifest.parse(JSON.parse(readFileSync(join(dir, '.tuneline', 'runs', handle.workflowId, 'run.json'), 'utf8')));
    expect(manifest).toMatchObject({ status: 'failed', outcome: null, config: { resolved: null }, steps: [] });
    expect(manifest.error).toContain('training.strategy');
  });

  it('a dataset with too many bad rows fails with how many and why, after one attempt', async () => {
    const dir = tempDir();
    const lines = Array.from({ length: 40 }, (_, i) =>
      JSON.stringify(i % 2 === 0 ? { question: `Question ${i}?`, answer: `Answer ${i}.` } : { question: `Question ${i}?`, answer: i }),
    );
    writeFileSync(join(dir, 'bad.jsonl'), lines.join('\n'));
    const loaded = loadConfigFile(writePipeline(dir, { name: 'it-bad-rows', data: { path: 'bad.jsonl' } }));
    const handle = await startPipeline(env.client, loaded, DATA_ONLY);
    const error = (await handle.result().catch((e: unknown) => e)) as WorkflowFailedError;
    expect(error.cause?.message).toMatch(/20 of 40 rows \(50\.0%\) are invalid.*20 wrong-type.*answer: expected text, found a number/);
    expect(await activityAttempts(env.client.workflow.getHandle(childWorkflowId.data(handle.workflowId)))).toMatchObject({ ingestData: 1 });
    const progress = await queryProgress(handle);
    expect(progress?.stage).toBe('failed');
    expect(progress?.steps.find((s) => s.step === 'ingest')?.status).toBe('failed');
  });
});

// The real data set lives beside the repository (research use only, never copied into it).
const amazonData = resolve(projectRoot, '..', 'shared', 'datasets', 'amazon-qa-appliances', 'data.jsonl');

describe('the shipped Amazon appliances recipe', () => {
  it.skipIf(!existsSync(amazonData))(
    'takes real customer answers through every data step cleanly (skipped where ../shared/datasets is absent)',
    async () => {
      const loaded = loadConfigFile(join(projectRoot, 'recipes', 'amazon-appliances.yaml'));
      const dir = tempDir();
      Object.assign(loaded.raw as object, { storage: { artifacts: join(dir, 'artifacts'), runs: join(dir, 'runs') } });
      const result = await (await startPipeline(env.client, loaded, DATA_ONLY)).result();
      const report = JSON.parse(readFileSync(artifactPath(result.data.dataReport.json), 'utf8'));
      expect(report.accounting).toMatchObject({ sourceRows: 8866, balanced: true });
      expect(report.accounting.quarantined / 8866).toBeLessThan(0.05);
      const cleaned = report.stages.find((s: { stage: string }) => s.stage === 'clean');
      expect(cleaned.details['changedByRule.removeUrls']).toBeGreaterThan(0);
      expect(Object.keys(cleaned.details).some((k) => k.startsWith('removed.'))).toBe(true);
      const rows = [...(await readRows(reader, result.data.splits.train)), ...(await readRows(reader, result.data.splits.test))];
      expect(rows.some((r) => /https?:\/\//.test(r.answer))).toBe(false);
      // Stratified by question type: both types in every split.
      for (const split of ['train', 'validation', 'test']) {
        expect(report.splitsByCategory['yes/no'][split]).toBeGreaterThan(0);
        expect(report.splitsByCategory['open-ended'][split]).toBeGreaterThan(0);
      }
    },
  );
});
