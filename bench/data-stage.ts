/**
 * Data-stage benchmark: rows per second and peak memory at 10,000 and 100,000 rows, how the
 * near-duplicate step scales (time at 100k / time at 10k; linear is 10, quadratic 100), and the
 * orchestration overhead of running the stage on Temporal (a pipeline workflow, its data-stage child
 * workflow and the run manifest) against calling the same activity functions directly in one process.
 *
 *   npm run bench:data            # prints the table and writes bench/results/data-stage.json
 *
 * Each measurement runs in its own child process so peak memory (max RSS) is its own.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { PipelineConfig } from '../schemas/config';
import type { StepResult } from '../schemas/manifests';
import * as acts from '../activities/data-stage';
import { startPipeline } from '../cli/client';
import { startDevServer } from '../cli/server';
import { connectWorker, createWorker, installWorkerLogging } from '../workers/create';
import { Client, Connection } from '@temporalio/client';

const DATA_ONLY = { stopAfter: 'data' } as const;
const tempDir = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

interface Measurement {
  mode: 'direct' | 'temporal';
  rows: number;
  seconds: number;
  stepSeconds: Record<string, number>;
  peakRssMiB: number;
}

function benchConfig(rows: number, dir: string) {
  return {
    name: 'bench',
    data: { sample: { rows, seed: 1 }, columns: { category: 'category', product: 'product', fact: 'fact' } },
    storage: { artifacts: join(dir, 'artifacts') },
  };
}

/** The data stage as plain function calls, in the workflow's order. */
async function runDirect(rows: number): Promise<Measurement> {
  const dir = tempDir('tuneline-bench-');
  const config = PipelineConfig.parse(benchConfig(rows, dir));
  const base = { config, configDir: dir, noCache: true };
  const started = performance.now();
  const source = await acts.prepareSource(base);
  const ingest = await acts.ingestData({ ...base, source });
  const clean = await acts.cleanData({ ...base, rows: ingest.outputs.rows });
  const dedup = await acts.dedupData({ ...base, rows: clean.outputs.rows });
  const split = await acts.splitData({ ...base, rows: dedup.outputs.rows });
  const report = await acts.writeDataReport({ ...base, steps: { source, ingest, clean, dedup, split } });
  const steps: StepResult[] = [source, ingest, clean, dedup, split, report];
  const seconds = (performance.now() - started) / 1000;
  return {
    mode: 'direct',
    rows,
    seconds,
    stepSeconds: Object.fromEntries(steps.map((s) => [s.step, s.seconds])),
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

/** The same stage as a Temporal run: dev server, in-process worker, workflow. Server start is not timed. */
async function runOnTemporal(rows: number): Promise<Measurement> {
  const dir = tempDir('tuneline-bench-');
  installWorkerLogging(); // warnings and errors to stderr
  const server = await startDevServer({ dir });
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection });
  const worker: Worker = await createWorker('cpu', await connectWorker({ address: server.address, namespace: 'default' }), 'default');
  try {
    const config = benchConfig(rows, dir);
    const loaded = { path: join(dir, 'temporal.yaml'), configDir: dir, raw: config, configHash: 'bench', problems: [] };
    const { result, seconds } = await worker.runUntil(async () => {
      // Warm the worker (bundle loaded, pollers up) with a tiny run, so the measurement is the run alone.
      await (await startPipeline(client, { ...loaded, raw: benchConfig(100, dir) }, { ...DATA_ONLY, noCache: true })).result();
      const started = performance.now();
      const measured = await (await startPipeline(client, loaded, { ...DATA_ONLY, noCache: true })).result();
      return { result: measured, seconds: (performance.now() - started) / 1000 };
    });
    return {
      mode: 'temporal',
      rows,
      seconds,
      stepSeconds: Object.fromEntries(result.steps.map((s) => [s.step, s.seconds])),
      peakRssMiB: process.resourceUsage().maxRSS / 1024,
    };
  } finally {
    await connection.close();
    await server.stop();
  }
}

function measureInChild(mode: 'direct' | 'temporal', rows: number): Measurement {
  const out = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--child', mode, String(rows)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const line = out.stdout.trim().split('\n').at(-1) ?? '';
  if (out.status !== 0 || !line.startsWith('{')) throw new Error(`bench child ${mode} ${rows} failed:\n${out.stderr}`);
  return JSON.parse(line) as Measurement;
}

async function main(): Promise<void> {
  const childIndex = process.argv.indexOf('--child');
  if (childIndex > 0) {
    const mode = process.argv[childIndex + 1] as 'direct' | 'temporal';
    const rows = Number(process.argv[childIndex + 2]);
    console.log(JSON.stringify(mode === 'direct' ? await runDirect(rows) : await runOnTemporal(rows)));
    process.exit(0);
  }
  const small = measureInChild('direct', 10_000);
  const large = measureInChild('direct', 100_000);
  const onTemporal = measureInChild('temporal', 10_000);
  const rate = (m: Measurement) => Math.round(m.rows / m.seconds);
  const dedupRatio = (large.stepSeconds.dedup ?? 0) / (small.stepSeconds.dedup ?? 1);
  const rows = [
    ['data stage, 10k rows (direct)', `${small.seconds.toFixed(2)} s`, `${rate(small)} rows/s`, `${small.peakRssMiB.toFixed(0)} MiB`],
    ['data stage, 100k rows (direct)', `${large.seconds.toFixed(2)} s`, `${rate(large)} rows/s`, `${large.peakRssMiB.toFixed(0)} MiB`],
    [
      'near-duplicate step 10k -> 100k',
      `${small.stepSeconds.dedup} s -> ${large.stepSeconds.dedup} s`,
      `ratio ${dedupRatio.toFixed(1)} (linear 10, quadratic 100)`,
      '',
    ],
    [
      'data stage 10k, Temporal vs direct',
      `${onTemporal.seconds.toFixed(2)} s vs ${small.seconds.toFixed(2)} s`,
      `ratio ${(onTemporal.seconds / small.seconds).toFixed(2)}`,
      `+${(onTemporal.seconds - small.seconds).toFixed(2)} s overhead`,
    ],
  ];
  console.log('\nData stage benchmark (this machine)\n');
  for (const r of rows) console.log(`  ${r[0]!.padEnd(38)} ${r[1]!.padEnd(26)} ${r[2]!.padEnd(36)} ${r[3]}`);
  console.log('\nPer-step seconds:');
  for (const m of [small, large, onTemporal])
    console.log(`  ${m.mode.padEnd(8)} ${String(m.rows).padStart(6)}: ${JSON.stringify(m.stepSeconds)}`);
  const resultsDir = join(import.meta.dirname, 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, 'data-stage.json'), JSON.stringify({ small, large, onTemporal, dedupRatio }, null, 2));
}

await main();
