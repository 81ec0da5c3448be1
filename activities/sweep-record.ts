/**
 * The sweep's record (cpu task queue): `sweep.json`, what a sweep read, ran and decided (the config,
 * the code, the data stage's steps, every trial with its numbers, the winner and its gate), and at
 * the end its report, both linked into `<storage.runs>/<sweep id>/` with the data files and the
 * winner's model, export and evaluation files. The first record is written after the data stage;
 * later ones carry its data section over, so the workflow never holds the data stage's steps.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { StorageSection, type PipelineConfig } from '../schemas/config';
import { ArtifactRef, type StepRecord, type StepResult, type SweepInput, type SweepManifest } from '../schemas/manifests';
import { readJsonArtifact } from './artifacts';
import { storeFor } from './context';
import { readSweepReportData, sweepReportBlocks } from './report/sweep-report';
import { writeReportFolder } from './report/run-report';
import { manifestSections } from './run-record';

/** The sweep's decisions as the workflow knows them now; the record adds what it reads from the input, the code and the store. */
export interface RecordSweepInput extends Omit<
  SweepManifest,
  'manifestVersion' | 'kind' | 'pipeline' | 'startedBy' | 'config' | 'code' | 'data' | 'steps' | 'artifacts'
> {
  /** The workflow's input, without the state it carries across continue-as-new. */
  sweep: Omit<SweepInput, 'state'>;
  config: PipelineConfig | null;
  /** The first record: the data stage's source, steps and named files. */
  data?: { source: ArtifactRef; steps: Array<{ stage: StepRecord['stage']; result: StepResult }>; files: Record<string, ArtifactRef> };
  /** Later records: the first one, whose data section and files are carried over. */
  previous?: ArtifactRef;
  /** The winner's model, export and evaluation files, linked as `winner-<name>`. */
  winnerFiles?: Record<string, ArtifactRef>;
}

/** Reads back only what a later record carries over; the rest of a stored manifest is not re-checked. */
const Carried = z.object({
  data: z.unknown(),
  steps: z.array(z.unknown()),
  artifacts: z.record(z.string(), ArtifactRef),
});

export async function recordSweep(
  input: RecordSweepInput,
): Promise<{ manifest: ArtifactRef; sweepFolder: string; report: ArtifactRef | null }> {
  const config = input.config ?? ({ storage: StorageSection.parse({}) } as PipelineConfig);
  const context = { config, configDir: input.sweep.configDir };
  const store = storeFor(context);
  const sections = manifestSections(input.sweep, input.config, input.data?.source ?? null, input.data?.steps ?? []);
  const carried = input.previous ? await readJsonArtifact(store, input.previous, Carried) : null;
  const files: Record<string, ArtifactRef> = { ...(carried?.artifacts ?? {}), ...(input.data?.files ?? {}) };
  for (const [name, ref] of Object.entries(input.winnerFiles ?? {})) files[`winner-${name}`] = ref;
  delete files['sweep.json'];

  const manifest: SweepManifest = {
    manifestVersion: 1,
    kind: 'sweep',
    sweepId: input.sweepId,
    pipeline: input.config?.name ?? 'invalid-config',
    status: input.status,
    error: input.error,
    startedAt: input.startedAt,
    updatedAt: input.updatedAt,
    startedBy: input.sweep.startedBy ?? null,
    config: sections.config,
    code: sections.code,
    data: carried ? (carried.data as SweepManifest['data']) : sections.data,
    steps: carried ? (carried.steps as StepRecord[]) : sections.steps,
    metric: input.metric,
    totalSteps: input.totalSteps,
    rungs: input.rungs,
    trials: input.trials,
    winner: input.winner,
    metrics: input.metrics,
    gate: input.gate,
    trialSteps: input.trialSteps,
    gridSteps: input.gridSteps,
    artifacts: files,
  };

  // The report once the trials have run (the sweep ended or failed partway), never for the data stage alone.
  let report: ArtifactRef | null = null;
  if (input.status !== 'running' && input.trials.some((t) => t.steps > 0)) {
    const work = store.workDir(`sweep-report-${input.sweepId.replace(/[^\w.-]/g, '_')}`);
    const folder = join(work, 'report');
    await writeReportFolder(folder, `Sweep report: ${manifest.pipeline}`, sweepReportBlocks(await readSweepReportData(store, manifest)));
    report = await store.putDir(folder);
    await rm(work, { recursive: true, force: true });
    manifest.artifacts.report = report;
  }
  const ref = await store.put(JSON.stringify(manifest, null, 2) + '\n', '.json', null);
  const sweepFolder = await store.publishRun(input.sweepId, { ...manifest.artifacts, 'sweep.json': ref });
  return { manifest: ref, sweepFolder, report };
}
