/**
 * The data report: counts in and out of every stage and why, as JSON (for machines and later
 * reports) and Markdown (for people). It also checks the books: every source row is either in a
 * split, in quarantine, or removed by a named rule.
 */
import type { PipelineConfig } from '../../schemas/config';
import type { StepResult } from '../../schemas/manifests';

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

export function renderDataReportMarkdown(report: DataReport): string {
  const out: string[] = [`# Data report: ${report.pipeline}`, ''];
  out.push(`Source: ${String(report.source.kind ?? '')} \`${String(report.source.path ?? '')}\``, '');
  out.push('| stage | rows in | rows out | reused | seconds | details |', '| --- | ---: | ---: | --- | ---: | --- |');
  for (const s of report.stages) {
    const details = Object.entries(s.details)
      .filter(([, v]) => v !== 0)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ');
    out.push(`| ${s.stage} | ${s.rowsIn} | ${s.rowsOut} | ${s.reused ? 'yes' : 'no'} | ${s.seconds.toFixed(2)} | ${details} |`);
  }
  const a = report.accounting;
  out.push('', '## Splits', '', '| split | rows |', '| --- | ---: |');
  for (const [name, n] of Object.entries(report.splits)) out.push(`| ${name} | ${n} |`);
  const categories = Object.entries(report.splitsByCategory);
  if (categories.length > 0) {
    out.push('', '| category | train | validation | test |', '| --- | ---: | ---: | ---: |');
    for (const [cat, c] of categories) out.push(`| ${cat} | ${c.train ?? 0} | ${c.validation ?? 0} | ${c.test ?? 0} |`);
  }
  out.push('', '## Accounting', '');
  out.push(
    `${a.sourceRows} source rows = ${a.inSplits} in splits + ${a.quarantined} quarantined + ${a.removed} removed: ${a.balanced ? 'balanced' : 'NOT BALANCED'}.`,
    '',
  );
  return out.join('\n');
}
