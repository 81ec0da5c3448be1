/**
 * The data report: counts in and out of every stage and why, as JSON (for machines and later
 * reports) and Markdown (for people). It also checks the books: every source row is either in a
 * split, in quarantine, or removed by a named rule.
 */
import type { PipelineConfig } from '../../schemas/config';
import type { StepResult } from '../../schemas/manifests';
import { renderMarkdown, type Block } from '../report/document';

type Stats = Record<string, unknown>;

export interface StageLine {
  stage: string;
  rowsIn: number;
  rowsOut: number;
  reused: boolean;
  seconds: number;
  details: Record<string, number>;
}

export interface DataReport {
  pipeline: string;
  source: Stats;
  stages: StageLine[];
  splits: Record<string, number>;
  splitsByCategory: Record<string, Record<string, number>>;
  accounting: { sourceRows: number; inSplits: number; quarantined: number; removed: number; balanced: boolean };
}

const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

/** Flattens nested count maps into `name.key` numbers for the details column. */
function flattenCounts(stats: Stats, skip: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(stats)) {
    if (skip.includes(k)) continue;
    if (typeof v === 'number') out[k] = v;
    else if (v && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k2, v2] of Object.entries(v)) if (typeof v2 === 'number') out[`${k}.${k2}`] = v2;
    }
  }
  return out;
}

export function buildDataReport(config: PipelineConfig, steps: StepResult<object>[]): DataReport {
  const byName = new Map(steps.map((s) => [s.step, s]));
  const stats = (name: string): Stats => (byName.get(name)?.stats ?? {}) as Stats;
  const line = (stage: string, rowsIn: number, rowsOut: number, skip: string[]): StageLine => ({
    stage,
    rowsIn,
    rowsOut,
    reused: byName.get(stage)?.reused ?? false,
    seconds: byName.get(stage)?.seconds ?? 0,
    details: flattenCounts(stats(stage), ['rowsIn', 'rowsOut', ...skip]),
  });
  const ingest = stats('ingest');
  const clean = stats('clean');
  const dedup = stats('dedup');
  const split = stats('split') as { counts?: Record<string, number>; byCategory?: Record<string, Record<string, number>> };
  const counts = split.counts ?? {};
  const inSplits = num(counts.train) + num(counts.validation) + num(counts.test);
  const sourceRows = num(ingest.rowsIn);
  const quarantined = num(ingest.quarantined);
  const removed = num(clean.rowsIn) - num(clean.rowsOut) + (num(dedup.rowsIn) - num(dedup.rowsOut));
  return {
    pipeline: config.name,
    source: stats('source'),
    stages: [
      line('ingest', sourceRows, num(ingest.valid), ['valid']),
      line('clean', num(clean.rowsIn), num(clean.rowsOut), []),
      line('dedup', num(dedup.rowsIn), num(dedup.rowsOut), []),
      line('split', num(dedup.rowsOut), inSplits, ['byCategory', 'stratified']),
    ],
    splits: counts,
    splitsByCategory: split.byCategory ?? {},
    accounting: { sourceRows, inSplits, quarantined, removed, balanced: sourceRows === inSplits + quarantined + removed },
  };
}

/** The data report as document blocks: a stage table, the splits (by category too) and the accounting. */
export function dataReportBlocks(report: DataReport): Block[] {
  const a = report.accounting;
  const blocks: Block[] = [
    { kind: 'heading', level: 1, text: `Data report: ${report.pipeline}` },
    { kind: 'paragraph', text: `Source: ${String(report.source.kind ?? '')} \`${String(report.source.path ?? '')}\`` },
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
  return blocks;
}

export function renderDataReportMarkdown(report: DataReport): string {
  return renderMarkdown(dataReportBlocks(report));
}
