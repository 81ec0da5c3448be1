/**
 * The GPU check, run by `scripts/gpu-check.sh` after setup (or directly: `npx tsx scripts/gpu-check.ts`).
 *
 * It starts its own Temporal dev server and a cpu and a gpu worker process, then runs the default
 * pipeline twice, LoRA and full fine-tuning: the LoRA run's gpu worker is killed (SIGKILL) once a
 * training checkpoint is on disk and a step after it is logged, a new worker takes the retried
 * attempt, and the check compares both attempts' loss at the first step after the checkpoint. Every
 * figure of `gpu-check.json` comes from the runs' manifests and training events; every step that
 * fails is recorded with its error, the file is written anyway, and the exit code is 1.
 *
 *   --out FILE        where to write the figures (default ./gpu-check.json)
 *   --mode MODE       auto (gpu when torch sees a CUDA device), gpu or cpu
 *   --model DIR       base model instead of `default` (the tests pass a tiny random model)
 *   --work DIR        the runs' folder (default .tuneline/gpu-check/<time>)
 *   --setup-seconds N the shell script's setup time, recorded as a stage
 *   --note TEXT       a note for the file (repeatable): what the shell script did about torch
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { artifactPath } from '../activities/artifacts';
import { queryProgress, readRunManifest, startPipeline, trainingProgress, type PipelineHandle } from '../cli/client';
import { loadConfigFile } from '../cli/config';
import { startDevServer, type StartedServer } from '../cli/server';
import { GpuCheckReport, type GpuCheckFailure, type GpuCheckMachine, type GpuCheckStrategy, type ResumeCheck } from '../schemas/gpu-check';
import type { PipelineResult } from '../schemas/manifests';
import { parseTrainingEvents } from '../activities/train';
import { resumeCheck, strategyFigures } from './gpu-check/figures';
import { baseModelParameters, probeMachine } from './gpu-check/machine';
import { killAndWait, spawnWorker as startWorker } from '../test/integration/harness';
import { writeCheckPipelines, type CheckMode, type Strategy } from './gpu-check/pipelines';

const root = resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    out: { type: 'string', default: 'gpu-check.json' },
    mode: { type: 'string', default: 'auto' },
    model: { type: 'string' },
    work: { type: 'string' },
    'setup-seconds': { type: 'string' },
    note: { type: 'string', multiple: true, default: [] },
  },
});
if (!['auto', 'gpu', 'cpu'].includes(args.mode!)) throw new Error(`--mode must be auto, gpu or cpu, not ${args.mode}`);

const startedAt = new Date();
const log = (line: string) => console.log(`gpu-check: ${line}`);
const failures: GpuCheckFailure[] = [];
const stages: Record<string, number> = {};
const notes: string[] = [...args.note!];
if (args['setup-seconds']) stages.setup = Number(args['setup-seconds']);

/** Runs one stage of the check, timed; a failure is recorded and the check goes on. */
async function stage<T>(name: string, body: () => Promise<T> | T): Promise<T | undefined> {
  const started = performance.now();
  try {
    return await body();
  } catch (err) {
    const error = err instanceof Error ? (err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message) : String(err);
    failures.push({ step: name, error });
    log(`${name} failed: ${error}`);
    return undefined;
  } finally {
    stages[name] = (performance.now() - started) / 1000;
  }
}

const work = resolve(args.work ?? join(root, '.tuneline', 'gpu-check', startedAt.toISOString().replace(/[:.]/g, '-')));
mkdirSync(join(work, 'logs'), { recursive: true });
const baseModel = args.model ? resolve(args.model) : 'default';

const machine = await stage('machine', probeMachine);
const mode: CheckMode = args.mode === 'auto' ? (machine?.device === 'cuda' ? 'gpu' : 'cpu') : (args.mode as CheckMode);
if (mode === 'gpu' && machine?.device !== 'cuda')
  failures.push({ step: 'machine', error: `--mode gpu, but torch ${machine?.torch ?? '?'} sees no CUDA device` });
if (machine && machine.nvidiaSmiGpus > 0 && machine.gpuCount === 0)
  notes.push(`nvidia-smi lists ${machine.nvidiaSmiGpus} GPU(s), but torch ${machine.torch} sees none (a CPU build of torch?)`);
if (mode === 'cpu') notes.push('No GPU used: the CPU mode ran with tiny settings. Its figures test the check itself, not the GPU path.');
const gpus = mode === 'gpu' ? (machine?.gpuCount ?? 1) : 1;
if (gpus > 1)
  notes.push(
    `${gpus} GPUs: training ran with training.distributed.processes: ${gpus}, one engine process per GPU (nccl); ` +
      "tokens per second are the whole group's, peak memory is the first GPU's.",
  );
log(
  `${mode} mode on ${machine?.deviceName ?? 'an unknown machine'} (torch ${machine?.torch}, CUDA ${machine?.cuda ?? 'none'}); runs in ${work}`,
);

const files = writeCheckPipelines(work, mode, args.model && baseModel, gpus);
const workers: ChildProcess[] = [];
let server: StartedServer | undefined;
let connection: Connection | undefined;

/** A worker process (the test harness's), its log in the check's logs folder, numbered in start order. */
function spawnWorker(queue: 'cpu' | 'gpu', address: string): ChildProcess {
  const child = startWorker(queue, address, {}, join(work, 'logs', `worker-${queue}-${workers.length + 1}.log`));
  workers.push(child);
  return child;
}

/** Every training work folder's events log (`<artifacts>/work/<key>/events.jsonl`), parsed. */
function trainingEventsOnDisk(artifacts: string) {
  const folder = join(artifacts, 'work');
  if (!existsSync(folder)) return [];
  return readdirSync(folder)
    .map((key) => join(folder, key, 'events.jsonl'))
    .filter((path) => existsSync(path))
    .flatMap((path) => parseTrainingEvents(readFileSync(path, 'utf8')));
}

/**
 * Kills the gpu worker once the first attempt has written a checkpoint and logged a step after its
 * newest one (so both attempts train that step), then starts another; resolves with the step it was
 * killed after, or undefined when the run ended first.
 */
async function killMidTraining(handle: PipelineHandle, gpu: ChildProcess, address: string): Promise<number | undefined> {
  let ended = false;
  void handle.result().then(
    () => (ended = true),
    () => (ended = true),
  );
  while (!ended) {
    const events = trainingEventsOnDisk(join(work, 'artifacts')).filter((e) => e.attempt === 1);
    const checkpoint = events.findLast((e) => e.event === 'checkpoint');
    const after = checkpoint && events.find((e) => e.event === 'step' && e.step > checkpoint.step);
    if (after) {
      await killAndWait(gpu);
      spawnWorker('gpu', address);
      return after.step;
    }
    await sleep(100);
  }
  return undefined;
}

/** Prints where a run is every 20 s, for whoever watches a long GPU run. */
function followProgress(handle: PipelineHandle, label: string): () => void {
  const timer = setInterval(() => {
    void (async () => {
      const progress = await queryProgress(handle).catch(() => undefined);
      const training = progress?.stage === 'train' ? await trainingProgress(handle).catch(() => undefined) : undefined;
      const detail = training
        ? ` step ${training.step}/${training.totalSteps ?? '?'} loss ${training.loss?.toFixed(3) ?? '-'} ${training.tokensPerSecond?.toFixed(0) ?? '-'} tokens/s`
        : '';
      if (progress) log(`${label}: ${progress.stage}${detail}`);
    })();
  }, 20_000);
  return () => clearInterval(timer);
}

const finished: Partial<Record<Strategy, { result: PipelineResult; wallSeconds: number }>> = {};
let resume = null as ResumeCheck | null; // set inside a stage (a closure), which TypeScript cannot follow

try {
  const client = await stage('server', async () => {
    server = await startDevServer({ dir: join(work, 'temporal') });
    connection = await Connection.connect({ address: server.address });
    spawnWorker('cpu', server.address);
    return new Client({ connection });
  });
  for (const strategy of ['lora', 'full'] as const) {
    if (!client || !server) break;
    const address = server.address;
    await stage(strategy, async () => {
      const started = performance.now();
      const gpu = spawnWorker('gpu', address);
      const handle = await startPipeline(client, loadConfigFile(files[strategy]), { command: 'scripts/gpu-check.ts' });
      log(`${strategy}: run ${handle.workflowId} started`);
      const stopFollowing = followProgress(handle, strategy);
      try {
        // The LoRA run is the one killed mid-training; full fine-tuning runs straight.
        const killedAt = strategy === 'lora' ? await killMidTraining(handle, gpu, address) : undefined;
        if (strategy === 'lora') {
          if (killedAt === undefined)
            failures.push({ step: 'resume', error: 'the run ended before a checkpoint and a step after it were seen' });
          else log(`${strategy}: gpu worker killed after step ${killedAt}; a new one takes the retried attempt`);
        }
        const result = await handle.result();
        finished[strategy] = { result, wallSeconds: (performance.now() - started) / 1000 };
        log(`${strategy}: ${result.outcome} in ${finished[strategy].wallSeconds.toFixed(1)} s`);
        if (killedAt !== undefined && result.training) {
          resume = resumeCheck(strategy, parseTrainingEvents(readFileSync(artifactPath(result.training.events), 'utf8')));
          if (!resume.passed)
            failures.push({ step: 'resume', error: `the resumed training did not continue exactly: ${JSON.stringify(resume)}` });
        }
      } finally {
        stopFollowing();
        // One gpu worker at a time: the next strategy gets a fresh one.
        for (const w of workers.slice(1)) await killAndWait(w);
      }
    });
  }
} finally {
  for (const w of workers) await killAndWait(w);
  await connection?.close().catch(() => {});
  await server?.stop().catch(() => {});
}

const strategies: Record<Strategy, GpuCheckStrategy | null> = { lora: null, full: null };
if (finished.lora || finished.full) {
  const parameters = await stage('parameters', () => baseModelParameters(baseModel));
  for (const strategy of ['lora', 'full'] as const) {
    const run = finished[strategy];
    if (!run) continue;
    await stage(`${strategy}-figures`, () => {
      const manifestPath = artifactPath(run.result.manifest);
      const figures = strategyFigures(
        strategy,
        run.result,
        readRunManifest(run.result),
        machine ?? { device: 'cpu', deviceName: 'unknown' },
        run.wallSeconds,
        parameters ?? null,
        manifestPath,
      );
      strategies[strategy] = figures;
    });
  }
}

const finishedAt = new Date();
const report: GpuCheckReport = {
  reportVersion: 1,
  mode,
  status: failures.length === 0 ? 'passed' : 'failed',
  startedAt: startedAt.toISOString(),
  finishedAt: finishedAt.toISOString(),
  wallSeconds: (finishedAt.getTime() - startedAt.getTime()) / 1000,
  stages,
  machine: machine ?? null,
  baseModel,
  pipelines: files,
  strategies,
  resume,
  notes,
  failures,
};
const checked = GpuCheckReport.safeParse(report);
if (!checked.success) failures.push({ step: 'report', error: `gpu-check.json breaks its schema: ${checked.error.message}` });
report.status = failures.length === 0 ? 'passed' : 'failed';
const out = resolve(args.out!);
writeFileSync(out, JSON.stringify(report, null, 2) + '\n');

for (const s of Object.values(strategies)) {
  if (!s) continue;
  const t = s.training;
  const mfu = s.mfu.value === null ? `MFU n/a (${s.mfu.reason})` : `MFU ${(s.mfu.value * 100).toFixed(1)}%`;
  log(
    `${s.strategy}: ${t.steps} steps (${t.epochs?.toFixed(2) ?? '?'} epochs) on ${t.device}, ${t.tokensPerSecond?.toFixed(0) ?? '-'} tokens/s, ` +
      `peak ${(t.peakMemoryBytes / 2 ** 20).toFixed(0)} MiB, ${mfu}, validation loss ${t.initialValidationLoss.toFixed(3)} -> ${t.validationLoss.toFixed(3)}, ` +
      `gate: ${s.gate?.verdict ?? s.outcome}`,
  );
}
if (resume)
  log(
    `resume: ${resume.passed ? 'passed' : 'FAILED'}, loss at step ${resume.comparedStep}: ${resume.killedAttemptLoss} (killed) and ${resume.resumedAttemptLoss} (resumed)`,
  );
log(`${report.status} in ${report.wallSeconds.toFixed(0)} s; ${failures.length} failure(s); figures in ${out}`);
process.exit(failures.length === 0 ? 0 : 1);
