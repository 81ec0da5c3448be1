/**
 * Ops and audit on a real dev server, with payload encryption on for every worker and client: a run
 * promotes its gated model and is searchable by its lineage; its audit report matches its files; the
 * registry's promote and rollback; declared schedules applied, triggered, paused and backfilled; a
 * scheduled run with nothing new ends early; and the raw history holds nothing in clear.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@temporalio/client';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { artifactPath, sha256File, sha256Tree } from '../../activities/artifacts';
import { renderTextTable } from '../../activities/report/document';
import { metricTableBlock } from '../../activities/report/metric-table';
import { readProduction, readRegistryLog, type RegistryEvent } from '../../activities/registry';
import { codeVersionOf } from '../../activities/run-record';
import type { RunListing } from '../../cli/commands/runs';
import { decodePayload, readRunManifest, startPipeline } from '../../cli/client';
import { loadConfigFile } from '../../cli/config';
import type { Lineage } from '../../cli/lineage';
import { AesGcmCodec, ENCRYPTED_ENCODING, KEYS_ENV, readKeyFile, rotateKeys } from '../../lib/encryption';
import type { PipelineInput, PipelineResult, RunManifest } from '../../schemas/manifests';
import { SearchAttributes, childWorkflowId } from '../../workflows/definitions';
import { buildTinyModel, cliPath, killAndWait, spawnWorker, tinyRun, startTestServer, tempDir, waitFor, type TestServer } from './harness';

let env: TestServer;
let client: Client;
let tinyModel: string;
const dir = tempDir();
const keyFile = join(dir, 'keys.json');
const workers: Array<ReturnType<typeof spawnWorker>> = [];

beforeAll(async () => {
  writeFileSync(keyFile, JSON.stringify(rotateKeys(null)));
  env = await startTestServer();
  client = new Client({ connection: env.connection, dataConverter: { payloadCodecs: [new AesGcmCodec(readKeyFile(keyFile))] } });
  tinyModel = buildTinyModel();
  workers.push(spawnWorker('cpu', env.server.address, { [KEYS_ENV]: keyFile }));
  workers.push(spawnWorker('gpu', env.server.address, { [KEYS_ENV]: keyFile }));
});

afterAll(async () => {
  for (const w of workers) await killAndWait(w);
  await env?.close();
});

const tuneline = (args: string[], keys: string | null = keyFile) => {
  const { [KEYS_ENV]: _unset, ...rest } = process.env;
  const out = spawnSync(process.execPath, [cliPath, ...args], {
    cwd: dir,
    env: { ...rest, TEMPORAL_ADDRESS: env.server.address, ...(keys ? { [KEYS_ENV]: keys } : {}) },
    encoding: 'utf8',
    timeout: 180_000,
  });
  return { code: out.status, stdout: out.stdout, stderr: out.stderr };
};

const pipeline = (extra: Record<string, unknown> = {}) => ({
  name: 'it-ops',
  ...tinyRun(tinyModel, 8),
  storage: { artifacts: join(dir, 'artifacts') },
  ...extra,
});

const writeFile = (name: string, config: Record<string, unknown>) => {
  writeFileSync(join(dir, name), stringify(config));
  return join(dir, name);
};

const hashOf = async (path: string) => (statSync(path).isDirectory() ? (await sha256Tree(path)).sha256 : sha256File(path));

let promoted: { runId: string; result: PipelineResult; manifest: RunManifest };

describe('a gated run, its lineage and its encrypted history', () => {
  it('promotes the model whose gates passed and is listed by its lineage attributes', async () => {
    const handle = await startPipeline(client, loadConfigFile(writeFile('temporal.yaml', pipeline())));
    const result = await handle.result();
    promoted = { runId: handle.workflowId, result, manifest: readRunManifest(result) };
    expect(result.outcome).toBe('promoted');
    const production = readProduction(join(dir, '.tuneline', 'registry', 'it-ops'))!;
    expect(production).toMatchObject({
      action: 'promote',
      runId: handle.workflowId,
      model: result.onnx,
      dataset: promoted.manifest.data!.source.sha256,
      verdict: 'candidate',
      forced: false,
      by: `pipeline ${handle.workflowId}`,
      previous: null,
    });

    const attributes = (await handle.describe()).typedSearchAttributes;
    expect(attributes.get(SearchAttributes.verdict)).toBe('promoted');
    expect(attributes.get(SearchAttributes.datasetHash)).toBe(promoted.manifest.data!.source.sha256);
    expect(attributes.get(SearchAttributes.baseModel)).toBe(tinyModel);
    expect(attributes.get(SearchAttributes.codeVersion)).toBe(codeVersionOf(promoted.manifest.code));
    expect(attributes.get(SearchAttributes.startedBy)).toMatch(/^.+@.+$/);
    const listed = () =>
      (
        JSON.parse(
          tuneline(['runs', 'list', '--json', '--verdict', 'promoted', '--dataset', promoted.manifest.data!.source.sha256]).stdout,
        ) as RunListing[]
      ).map((r) => r.id);
    await waitFor(
      async () => listed(),
      (ids) => ids.includes(handle.workflowId),
    );
    expect(JSON.parse(tuneline(['runs', 'list', '--json', '--verdict', 'not-promoted', '--pipeline', 'it-ops']).stdout)).toEqual([]);
  });

  it('keeps every payload of the history encrypted: no question or answer text, no config in clear', async () => {
    const raw = new Client({ connection: env.connection }); // no codec: what the server stores
    const histories = [promoted.runId, childWorkflowId.data(promoted.runId), childWorkflowId.trial(promoted.runId)];
    const test = tableFromIPC(readFileSync(join(promoted.result.runFolder, 'test.arrow'))).toArray() as Array<{
      question: string;
      answer: string;
    }>;
    let payloads = 0;
    for (const id of histories) {
      const history = await raw.workflow.getHandle(id).fetchHistory();
      const text = JSON.stringify(history);
      for (const row of test.slice(0, 20)) {
        expect(text).not.toContain(row.question);
        expect(text).not.toContain(row.answer);
      }
      expect(text).not.toContain(tinyModel); // the config (model.base) travels only inside encrypted payloads
      // Every payload the history holds (inputs, results, memo, heartbeats) is sealed; search attributes
      // are the server's index, never encrypted, and hold names and hashes only.
      const clear: string[] = [];
      const visit = (node: unknown, path: string): void => {
        if (!node || typeof node !== 'object') return;
        const p = node as { metadata?: Record<string, Uint8Array> };
        if (p.metadata && 'encoding' in p.metadata) {
          payloads++;
          if (Buffer.from(p.metadata.encoding!).toString() !== ENCRYPTED_ENCODING) clear.push(path);
          return;
        }
        // Markers hold the SDK's patch ids (`registry-and-lineage`), written by its core without the codec.
        for (const [key, child] of Object.entries(node))
          if (key !== 'searchAttributes' && key !== 'markerRecordedEventAttributes') visit(child, `${path}.${key}`);
      };
      visit(history, id);
      expect(clear).toEqual([]);
    }
    expect(payloads).toBeGreaterThan(20);
    // The codec the workers use reads it back.
    const input = (await client.workflow.getHandle(promoted.runId).describe()).memo as { configFile?: string };
    expect(input.configFile).toBe(join(dir, 'temporal.yaml'));
  });

  it('audit report rebuilds the lineage: the hashes and metrics of the files the run made, and who promoted it', async () => {
    const out = tuneline(['audit', 'report', promoted.runId, '--format', 'json']);
    expect(out.code, out.stderr).toBe(0);
    const lineage = JSON.parse(out.stdout) as Lineage;
    const { manifest } = promoted;
    expect(lineage.data!.source.sha256).toBe(await sha256File(artifactPath(manifest.data!.source)));
    expect(lineage.config.hash).toBe(loadConfigFile(join(dir, 'temporal.yaml')).configHash);
    expect(lineage.manifest).toMatchObject({ matchesHistory: true, sha256: await sha256File(join(promoted.result.runFolder, 'run.json')) });
    for (const [name, ref] of Object.entries(lineage.artifacts))
      expect(await hashOf(join(promoted.result.runFolder, name)), name).toBe(ref.sha256);
    expect(lineage.metrics).toEqual(manifest.metrics);
    expect(lineage.gate?.verdict).toBe('candidate');
    expect(lineage.approvals).toEqual([
      expect.objectContaining({ action: 'promote', runId: promoted.runId, by: `pipeline ${promoted.runId}` }),
    ]);
    expect(lineage.startedBy).toEqual(manifest.startedBy);
    // Every activity of the run and its stages, with its attempts and timing.
    const train = lineage.activities.find((a) => a.activity === 'trainModel')!;
    expect(train).toMatchObject({ workflowId: childWorkflowId.trial(promoted.runId), status: 'completed', attempts: 1 });
    expect(train.seconds).toBeGreaterThan(0);
    expect(lineage.workflows.map((w) => w.type)).toEqual(['finetunePipeline', 'dataStage', 'trial']);
    const md = tuneline(['audit', 'report', promoted.runId]);
    expect(md.stdout).toContain(`# Lineage of run ${promoted.runId}`);
    expect(md.stdout).toContain(manifest.data!.source.sha256);
    expect(md.stdout).toContain(manifest.artifacts.onnx!.sha256);
  });
});

describe('the model registry', () => {
  const registry = () => join(dir, '.tuneline', 'registry', 'it-ops');
  let refused: string;
  let server: ChildProcess;
  let served: () => Promise<string[]>;

  it('refuses a model whose gates failed unless forced with a reason, and records who forced it', async () => {
    // The same training (reused from the cache), a gate no model passes.
    const path = writeFile('strict.yaml', pipeline({ gates: [{ metric: 'bleu', min: 101 }] }));
    const handle = await startPipeline(client, loadConfigFile(path));
    expect((await handle.result()).outcome).toBe('not-promoted');
    refused = handle.workflowId;

    const plain = tuneline(['models', 'promote', refused]);
    expect(plain.code).toBe(2);
    expect(plain.stderr).toContain('gates did not pass');
    expect(plain.stderr).toContain('--force --reason');
    const noReason = tuneline(['models', 'promote', refused, '--force']);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toContain('--force needs --reason');
    expect(readProduction(registry())!.runId).toBe(promoted.runId);

    // `tuneline serve` on the production model follows the pointer as it moves.
    server = spawn(process.execPath, [cliPath, 'serve', '--port', '0'], {
      cwd: dir,
      env: { ...process.env, TEMPORAL_ADDRESS: env.server.address, [KEYS_ENV]: keyFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    server.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    server.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const address = await waitFor(async () => /on (http:\/\/[\d.:]+)\/v1/.exec(output)?.[1], Boolean, 120_000);
    served = async () => ((await (await fetch(`${address}/v1/models`)).json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);
    expect(await served()).toEqual([`it-ops@${promoted.runId}`]);

    const forced = tuneline(['models', 'promote', refused, '--force', '--reason', 'hotfix for a launch']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(readProduction(registry())).toMatchObject({
      runId: refused,
      forced: true,
      reason: 'hotfix for a launch',
      previous: promoted.runId,
    });
    expect(readProduction(registry())!.by).toMatch(/^.+@.+$/);
    const listed = JSON.parse(tuneline(['models', 'list', '--json']).stdout) as Array<{
      runId: string;
      production: boolean;
      verdict: string;
    }>;
    expect(listed.filter((m) => m.production).map((m) => m.runId)).toEqual([refused]);
    expect(listed.map((m) => m.runId).sort()).toEqual([promoted.runId, refused].sort());
    await waitFor(served, (ids) => ids[0] === `it-ops@${refused}`, 60_000);
  });

  it('rolls back to the model it replaced, with the reason in the log', () => {
    const out = tuneline(['models', 'rollback', '--reason', 'answers got worse']);
    expect(out.code, out.stderr).toBe(0);
    expect(readProduction(registry())).toMatchObject({
      action: 'rollback',
      runId: promoted.runId,
      previous: refused,
      reason: 'answers got worse',
    });
    expect(readRegistryLog(registry()).map((e: RegistryEvent) => [e.action, e.runId, e.forced])).toEqual([
      ['promote', promoted.runId, false],
      ['promote', refused, true],
      ['rollback', promoted.runId, false],
    ]);
    expect(tuneline(['models', 'show', promoted.runId]).stdout).toContain('(production)');
  });

  it('the chat server reloaded the production model each time the pointer moved, and stops cleanly', async () => {
    await waitFor(served, (ids) => ids[0] === `it-ops@${promoted.runId}`, 60_000);
    const exited = new Promise<number | null>((done) => server.once('exit', done));
    server.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});

describe('declared schedules', () => {
  const schedules = [
    { id: 'nightly', cron: '0 3 * * *', timezone: 'Europe/Berlin', note: 'retrain on the night export' },
    { id: 'hourly', every: '1h', overlap: 'allow-all' },
  ];
  const apply = (...flags: string[]) => {
    const out = tuneline(['schedule', 'apply', '--json', ...flags]);
    expect(out.code, out.stderr).toBe(0);
    return (JSON.parse(out.stdout) as { plan: Array<{ scheduleId: string; action: string; changes: string[] }> }).plan;
  };
  const describeSchedule = (id: string) =>
    JSON.parse(tuneline(['schedule', 'describe', id, '--json']).stdout) as {
      paused: boolean;
      note: string | null;
      recentRuns: Array<{ workflowId: string }>;
      actions: number;
    };

  it('apply creates them, a second apply changes nothing, a changed file is planned by --dry-run', async () => {
    writeFile('temporal.yaml', pipeline({ schedules }));
    expect(apply().map((p) => `${p.action} ${p.scheduleId}`)).toEqual(['create it-ops.nightly', 'create it-ops.hourly']);
    expect(apply().map((p) => p.action)).toEqual(['unchanged', 'unchanged']);
    expect(tuneline(['schedule', 'apply']).stdout).toContain('No change: the server matches the file.');

    writeFile('temporal.yaml', pipeline({ schedules: [{ ...schedules[0], cron: '0 4 * * *' }, schedules[1]] }));
    // Both run this file, so both runs' config changed with it; the edited one's declaration too.
    const planned = apply('--dry-run');
    expect(planned.map((p) => p.action)).toEqual(['update', 'update']);
    expect(planned[0]!.changes[0]).toBe('schedule declaration changed');
    expect(planned[1]!.changes).toEqual([expect.stringMatching(/temporal\.yaml changed \(config \w+ -> \w+\)$/)]);
    expect(apply('--dry-run').map((p) => p.action)).toEqual(['update', 'update']); // nothing applied
    writeFile('temporal.yaml', pipeline({ schedules }));
    expect(apply().map((p) => p.action)).toEqual(['unchanged', 'unchanged']);
  });

  it('trigger starts a run with the declared config, which ends as nothing new: the production model has this data and config', async () => {
    expect(tuneline(['schedule', 'trigger', 'nightly']).code).toBe(0);
    const { recentRuns } = await waitFor(
      async () => describeSchedule('it-ops.nightly'),
      (d) => d.recentRuns.length === 1,
    );
    const handle = client.workflow.getHandle(recentRuns[0]!.workflowId);
    const result = (await handle.result()) as PipelineResult;
    expect(result.outcome).toBe('unchanged');
    expect(result.training).toBeNull();
    const history = await handle.fetchHistory();
    const started = await decodePayload<PipelineInput>(
      client,
      history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads,
    );
    expect(started).toMatchObject({
      configHash: loadConfigFile(join(dir, 'temporal.yaml')).configHash,
      onlyIfChanged: true,
      schedule: 'it-ops.nightly',
    });
    expect((await handle.describe()).typedSearchAttributes.get(SearchAttributes.startedBy)).toBe('schedule it-ops.nightly');
  });

  it('pause holds a schedule (and apply would undo a pause the file does not declare); unpause resumes it', async () => {
    expect(tuneline(['schedule', 'pause', 'it-ops.nightly', '--note', 'data export broken']).code).toBe(0);
    expect(describeSchedule('it-ops.nightly')).toMatchObject({ paused: true, note: 'data export broken' });
    expect(apply('--dry-run')[0]).toMatchObject({ action: 'update', changes: ['unpause (declared running)'] });
    expect(tuneline(['schedule', 'unpause', 'it-ops.nightly']).code).toBe(0);
    expect(describeSchedule('it-ops.nightly').paused).toBe(false);
  });

  it('backfill starts the runs a window missed; a schedule the file drops is deleted', async () => {
    const hour = 3_600_000;
    const top = Math.floor(Date.now() / hour) * hour;
    // Runs due at top-3h, top-2h and top-1h.
    const from = new Date(top - 3.5 * hour).toISOString();
    const to = new Date(top - 0.5 * hour).toISOString();
    expect(tuneline(['schedule', 'backfill', 'hourly', from, to]).code).toBe(0);
    const { recentRuns } = await waitFor(
      async () => describeSchedule('it-ops.hourly'),
      (d) => d.recentRuns.length === 3,
      120_000,
    );
    for (const run of recentRuns)
      expect(((await client.workflow.getHandle(run.workflowId).result()) as PipelineResult).outcome).toBe('unchanged');

    const bad = tuneline(['schedule', 'backfill', 'hourly', to, from]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('is not after FROM');

    // Listing is eventually consistent: wait until both are listed before dropping one.
    await waitFor(
      async () => JSON.parse(tuneline(['schedule', 'list', '--json']).stdout) as unknown[],
      (rows) => rows.length === 2,
    );
    writeFile('temporal.yaml', pipeline({ schedules: [schedules[0]] }));
    expect(apply().map((p) => `${p.action} ${p.scheduleId}`)).toEqual(['update it-ops.nightly', 'delete it-ops.hourly']);
    expect(tuneline(['schedule', 'describe', 'it-ops.hourly']).stderr).toContain('no schedule it-ops.hourly');
  });
});

describe('encryption keys', () => {
  it('after a rotation old histories still decrypt; without the key the audit fails clearly', () => {
    const rotated = join(dir, 'rotated.json');
    copyFileSync(keyFile, rotated);
    const before = readKeyFile(rotated);
    expect(tuneline(['keys', 'rotate', '--file', rotated], null).code).toBe(0);
    const after = readKeyFile(rotated);
    expect(after.current).not.toBe(before.current);
    expect(Object.keys(after.keys)).toEqual([...Object.keys(before.keys), after.current]);

    expect(tuneline(['audit', 'report', promoted.runId], rotated).code).toBe(0);
    const without = tuneline(['audit', 'report', promoted.runId], null);
    expect(without.code).toBe(2);
    expect(without.stderr).toContain(`this history is encrypted; set ${KEYS_ENV}`);
    const other = join(dir, 'other.json');
    writeFileSync(other, JSON.stringify(rotateKeys(null, new Date(0))));
    const wrongKey = tuneline(['audit', 'report', promoted.runId], other);
    expect(wrongKey.code).toBe(2);
    expect(wrongKey.stderr).toContain(`encrypted with key "${before.current}", which the key file does not hold`);
    // Replay decrypts too.
    const replay = tuneline(['audit', 'replay', promoted.runId], rotated);
    expect(replay.code, replay.stdout + replay.stderr).toBe(0);
    expect(replay.stdout).toContain('3 of 3 histories replay against this code.');
  });
});

// Base models without a chat template, each prompted in its own format: a GPT-2 in the plain format (question,
// the separator token, answer) and a T5 as an encoder-decoder (the prompt into the encoder, the answer out of the decoder).
describe.each([
  { kind: 'gpt2', format: { kind: 'plain', separator: '<|answer|>' } },
  { kind: 't5', format: { kind: 'seq2seq', separator: null } },
] as const)('a $kind base model, which has no chat template', ({ kind, format }) => {
  it('trains, exports, answers and is compared with its untuned self, forgetting check included', async () => {
    const base = buildTinyModel(kind);
    const run = tinyRun(base, 4);
    const config = {
      ...run,
      name: `it-${kind}`,
      storage: { artifacts: join(dir, `artifacts-${kind}`) },
      // A short system prompt fits the tiny GPT-2's 128 positions.
      model: { base, systemPrompt: 'Answer briefly.' },
      // The forgetting check asks for 512-token windows, more than the tiny GPT-2's 128 positions.
      evaluation: { ...run.evaluation, forgettingCheck: true },
    };
    const handle = await startPipeline(client, loadConfigFile(writeFile(`${kind}.yaml`, config)));
    const result = await handle.result();
    const steps = result.steps.map((s) => s.step);
    expect(steps).toEqual(
      expect.arrayContaining(['train', 'export', 'answers-tuned', 'export-base', 'answers-base', 'forgetting', 'score']),
    );
    const metrics = result.evaluation!.metrics;
    expect(Object.keys(metrics).sort()).toEqual(['base', 'tuned']);
    for (const system of ['base', 'tuned'] as const) {
      for (const metric of ['rougeL', 'bleu', 'chrf', 'perplexity'])
        expect(Number.isFinite(metrics[system]![metric]), `${system} ${metric}`).toBe(true);
    }
    const table = renderTextTable(metricTableBlock(metrics, { headline: true }));
    expect(table.split('\n')[0]).toMatch(/tuned\s+base \(untuned\)/);
    expect(table).toMatch(/ROUGE-L F1\s+\d\.\d{3}\s+\d\.\d{3}/);
    const promptFormat = (ref: { uri: string }) => JSON.parse(readFileSync(join(artifactPath(ref), 'prompt_format.json'), 'utf8'));
    const baseExport = readRunManifest(result).steps.find((s) => s.step === 'export-base')!;
    expect(promptFormat(baseExport.outputs.onnx!)).toMatchObject({ ...format, systemPrompt: 'Answer briefly.' });
    expect(promptFormat(result.onnx!)).toMatchObject({ ...format, systemPrompt: 'Answer briefly.' });
    // The histories, with the base-baseline-always patch marker, replay against this code.
    const replay = tuneline(['audit', 'replay', handle.workflowId]);
    expect(replay.code, replay.stdout + replay.stderr).toBe(0);
  }, 600_000);
});
