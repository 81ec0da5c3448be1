/**
 * The data report: counts in and out of every stage and why, as JSON (for machines and later
 * reports) and Markdown (for people). It also checks the books: every source row is either in a
 * split, in quarantine, or removed by a named rule, and so is every row of a feedback or knowledge file.
 */
import { z } from 'zod';
import type { PipelineConfig } from '../../schemas/config';
import type { StepResult } from '../../schemas/manifests';
import { renderMarkdown, type Block } from '../report/document';
import type { CleanStats } from './clean';
import type { DedupStats } from './dedup';
import type { IngestStats } from './ingest';
import type { FeedbackFileStats } from './feedback';
import type { KnowledgeFileStats } from './knowledge';
import type { DataFormat } from './readers';
import type { SplitStats } from './split';

/** What the source step says about where the rows came from. */
export interface SourceStats {
  kind: 'sample' | 'file';
  /** The file as configured, or the generated sample's store path. */
  path: string;
  format: DataFormat;
  /** True when the rows were read from a copy in the artifact store. */
  snapshot: boolean;
}

/** The data stage's step results, by name: what the report is built from. */
export interface DataStageSteps {
  source: StepResult<SourceStats>;
  ingest: StepResult<IngestStats>;
  clean: StepResult<CleanStats>;
  dedup: StepResult<DedupStats>;
  split: StepResult<SplitStats>;
  /** Only when the config names feedback files. */
  feedback?: StepResult<FeedbackStats>;
  /** Only when the config names knowledge files. */
  knowledge?: StepResult<KnowledgeStats>;
}

/** Each file is hashed where it lies; its sha256 is the step's input and the data fingerprint's part. */
export type FeedbackStats = { files: Array<FeedbackFileStats & { sha256: string }>; rows: number; trainRows: number };
export type KnowledgeStats = { files: Array<KnowledgeFileStats & { sha256: string }>; rows: number };

const StageLine = z.strictObject({
  stage: z.string(),
  rowsIn: z.number(),
  rowsOut: z.number(),
  reused: z.boolean(),
  seconds: z.number(),
  details: z.record(z.string(), z.number()),
});
export type StageLine = z.infer<typeof StageLine>;

/** `data-report.json`. The run report reads it back, so it has a schema. */
export const DataReport = z.strictObject({
  pipeline: z.string(),
  source: z.strictObject({
    kind: z.enum(['sample', 'file']),
    path: z.string(),
    format: z.enum(['csv', 'jsonl', 'parquet', 'arrow']),
    snapshot: z.boolean(),
  }),
  stages: z.array(StageLine),
  splits: z.record(z.string(), z.number()),
  splitsByCategory: z.record(z.string(), z.record(z.string(), z.number())),
  accounting: z.strictObject({
    sourceRows: z.number(),
    inSplits: z.number(),
    quarantined: z.number(),
    removed: z.number(),
    balanced: z.boolean(),
  }),
  /** The feedback files (data.feedback), each accounted for like the source; their rows are in the training split. */
  feedback: z
    .array(
      z.strictObject({
        path: z.string(),
        sha256: z.string(),
        rowsIn: z.number(),
        rejected: z.number(),
        quarantined: z.number(),
        removedByCleaning: z.number(),
        duplicates: z.number(),
        repeatsHeldOut: z.strictObject({ validation: z.number(), test: z.number() }),
        added: z.number(),
        balanced: z.boolean(),
      }),
    )
    .default([]),
  /** The training split's rows with the feedback rows; absent without feedback files. */
  trainWithFeedback: z.number().optional(),
  /** The knowledge files (retrieval.knowledge), each accounted for like the source. */
  knowledge: z
    .array(
      z.strictObject({
        path: z.string(),
        sha256: z.string().optional(),
        rowsIn: z.number(),
        quarantined: z.number(),
        removedByCleaning: z.number(),
        duplicates: z.number(),
        repeatsData: z.strictObject({ train: z.number(), validation: z.number(), test: z.number() }),
        indexed: z.number(),
        balanced: z.boolean(),
      }),
    )
    .default([]),
});
export type DataReport = z.infer<typeof DataReport>;

/** Flattens nested count maps into `name.key` numbers for the details column. */
function flattenCounts(stats: object, skip: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(stats)) {
    if (skip.includes(k)) continue;
    if (typeof v === 'number') out[k] = v;
    else if (v && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k2, v2] of Object.entries(v as object)) if (typeof v2 === 'number') out[`${k}.${k2}`] = v2;
    }
  }
  return out;
}

export function buildDataReport(config: PipelineConfig, steps: DataStageSteps): DataReport {
  const line = (step: StepResult<object>, rowsIn: number, rowsOut: number, skip: string[]): StageLine => ({
    stage: step.step,
    rowsIn,
    rowsOut,
    reused: step.reused,
    seconds: step.seconds,
    details: flattenCounts(step.stats, ['rowsIn', 'rowsOut', ...skip]),
  });
  const { source, ingest, clean, dedup, split } = steps;
  const counts = split.stats.counts;
  const inSplits = counts.train + counts.validation + counts.test;
  const sourceRows = ingest.stats.rowsIn;
  const removed = clean.stats.rowsIn - clean.stats.rowsOut + (dedup.stats.rowsIn - dedup.stats.rowsOut);
  return {
    pipeline: config.name,
    source: source.stats,
    stages: [
      line(ingest, sourceRows, ingest.stats.valid, ['valid']),
      line(clean, clean.stats.rowsIn, clean.stats.rowsOut, []),
      line(dedup, dedup.stats.rowsIn, dedup.stats.rowsOut, []),
      line(split, dedup.stats.rowsOut, inSplits, ['byCategory', 'stratified']),
    ],
    splits: counts,
    splitsByCategory: split.stats.byCategory,
    accounting: {
      sourceRows,
      inSplits,
      quarantined: ingest.stats.quarantined,
      removed,
      balanced: sourceRows === inSplits + ingest.stats.quarantined + removed,
    },
    feedback: (steps.feedback?.stats.files ?? []).map((file) => {
      const { validation, test } = file.repeatsHeldOut;
      const accounted = file.added + file.rejected + file.quarantined + file.removedByCleaning + file.duplicates + validation + test;
      return { ...file, balanced: file.rowsIn === accounted };
    }),
    ...(steps.feedback ? { trainWithFeedback: steps.feedback.stats.trainRows } : {}),
    knowledge: (steps.knowledge?.stats.files ?? []).map((file) => {
      const { train, validation, test } = file.repeatsData;
      const accounted = file.indexed + file.quarantined + file.removedByCleaning + file.duplicates + train + validation + test;
      return { ...file, balanced: file.rowsIn === accounted };
    }),
  };
}

/** The data report as document blocks: a stage table, the splits (by category too) and the accounting. */
export function dataReportBlocks(report: DataReport): Block[] {
  const a = report.accounting;
  const blocks: Block[] = [
    { kind: 'heading', level: 1, text: `Data report: ${report.pipeline}` },
    {
      kind: 'paragraph',
      text: `Source: ${report.source.kind} \`${report.source.path}\`${report.source.snapshot ? ' (read from its snapshot in the artifact store)' : ''}`,
    },
    {
      kind: 'table',
      header: ['stage', 'rows in', 'rows out', 'reused', 'seconds', 'details'],
      numeric: [false, true, true, false, true, false],
      rows: report.stages.map((s) => [
        s.stage,
        s.rowsIn,
        s.rowsOut,
        s.reused ? 'yes' : 'no',
        s.seconds.toFixed(2),
        Object.entries(s.details)
          .filter(([, v]) => v !== 0)
          .map(([k, v]) => `${k}: ${v}`)
          .join(', '),
      ]),
    },
    { kind: 'heading', level: 2, text: 'Splits' },
    { kind: 'table', header: ['split', 'rows'], numeric: [false, true], rows: Object.entries(report.splits) },
  ];
  const categories = Object.entries(report.splitsByCategory);
  if (categories.length > 0)
    blocks.push({
      kind: 'table',
      header: ['category', 'train', 'validation', 'test'],
      numeric: [false, true, true, true],
      rows: categories.map(([category, c]) => [category, c.train ?? 0, c.validation ?? 0, c.test ?? 0]),
    });
  blocks.push(
    { kind: 'heading', level: 2, text: 'Accounting' },
    {
      kind: 'paragraph',
      text: `${a.sourceRows} source rows = ${a.inSplits} in splits + ${a.quarantined} quarantined + ${a.removed} removed: ${a.balanced ? 'balanced' : 'NOT BALANCED'}.`,
    },
  );
  if (report.feedback.length > 0)
    blocks.push(
      { kind: 'heading', level: 2, text: 'Feedback files' },
      {
        kind: 'paragraph',
        text:
          `Added to the training split only: it has ${report.trainWithFeedback} rows, ${report.splits.train} from the data and ` +
          `${report.feedback.reduce((sum, f) => sum + f.added, 0)} from feedback. A rejected answer is never a target; a row whose ` +
          'question is a validation or test question is left out, so the question stays held out.',
      },
      {
        kind: 'table',
        header: [
          'file',
          'rows in',
          'rejected',
          'quarantined',
          'removed by cleaning',
          'duplicates',
          'repeat validation',
          'repeat test',
          'added to train',
          'accounting',
        ],
        numeric: [false, true, true, true, true, true, true, true, true, false],
        rows: report.feedback.map((f) => [
          f.path,
          f.rowsIn,
          f.rejected,
          f.quarantined,
          f.removedByCleaning,
          f.duplicates,
          f.repeatsHeldOut.validation,
          f.repeatsHeldOut.test,
          f.added,
          f.balanced ? 'balanced' : 'NOT BALANCED',
        ]),
      },
    );
  if (report.knowledge.length > 0)
    blocks.push(
      { kind: 'heading', level: 2, text: 'Knowledge files' },
      {
        kind: 'paragraph',
        text:
          'Searched by the retriever beside the training split, never trained on or evaluated. A pair that repeats a ' +
          "question of the data is left out: a training question's answer is already indexed, a validation or test question stays held out.",
      },
      {
        kind: 'table',
        header: [
          'file',
          'rows in',
          'quarantined',
          'removed by cleaning',
          'duplicates',
          'repeat train',
          'repeat validation',
          'repeat test',
          'indexed',
          'accounting',
        ],
        numeric: [false, true, true, true, true, true, true, true, true, false],
        rows: report.knowledge.map((f) => [
          f.path,
          f.rowsIn,
          f.quarantined,
          f.removedByCleaning,
          f.duplicates,
          f.repeatsData.train,
          f.repeatsData.validation,
          f.repeatsData.test,
          f.indexed,
          f.balanced ? 'balanced' : 'NOT BALANCED',
        ]),
      },
    );
  return blocks;
}

export function renderDataReportMarkdown(report: DataReport): string {
  return renderMarkdown(dataReportBlocks(report));
}
