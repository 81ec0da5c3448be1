/**
 * What the question-answer files beside the data share (`data.feedback`, `retrieval.knowledge`).
 * Pure: records in, rows out, with every row accounted for against its file.
 *
 * Each file's records are validated as the data's are (a bad row is quarantined, too many fail the
 * run with the file's key in the message), under ids that name the file; then all files' rows are
 * cleaned and deduplicated by the pipeline's own `clean` and `dedup` rules. `repeatedQuestions`
 * finds the rows whose question the data already asks, and in which split.
 */
import type { ColumnMapping, PipelineConfig } from '../../schemas/config';
import type { GroupedRow, QaRow, QuarantineRecord, SplitName } from '../../schemas/rows';
import { cleanRows } from './clean';
import { deduplicate, normalizeForMatch, numberTokens } from './dedup';
import { DatasetError, checkInvalidShare, validateRecords } from './ingest';
import { UnionFind, groupBy, joinNearDuplicates } from './minhash';
import type { SourceRecord } from './readers';

/** The config list a file is named in. */
export type QaFileList = 'data.feedback' | 'retrieval.knowledge';

/** The key of a file in messages: `retrieval.knowledge[0] (faq.csv)`. */
export const qaFileKey = (list: QaFileList, n: number, path: string) => `${list}[${n}] (${path})`;

/** What became of one file's rows on the way in. */
export interface QaFileCounts {
  /** The file as configured. */
  path: string;
  rowsIn: number;
  quarantined: number;
  removedByCleaning: number;
  duplicates: number;
}

export interface RemovedRow {
  row: QaRow;
  reason: string;
  duplicateOf?: string;
}

/** Row ids name their file, so they never collide with the data's or each other's: `k1:row-7`, `f2:a81`. */
const idPrefix = (list: QaFileList, n: number) => `${list === 'data.feedback' ? 'f' : 'k'}${n + 1}:`;
/** The file index of a prefixed id. */
export const fileOf = (id: string) => Number(id.slice(1, id.indexOf(':'))) - 1;

/**
 * `data.columns` for a file that names no mapping of its own, without the optional columns (id,
 * category, product, fact) the file does not have: a FAQ need not carry the data's product column.
 */
function inheritedColumns(columns: ColumnMapping, records: SourceRecord[]): ColumnMapping {
  const seen = new Set<string>();
  for (const r of records) if ('record' in r) for (const key of Object.keys(r.record)) seen.add(key);
  const { question, answer, ...optional } = columns;
  return {
    question,
    answer,
    ...Object.fromEntries(Object.entries(optional).filter(([, column]) => column !== undefined && seen.has(column))),
  };
}

/**
 * Validates each file's records by its own column mapping (or the data's, as inherited) and the
 * data's limits. Throws a DatasetError naming the file when too many of its rows are invalid or its
 * mapping names a column no row has; an empty file is an error unless `allowEmpty`.
 */
export function validateQaFiles(
  list: QaFileList,
  files: Array<{ path: string; records: SourceRecord[] }>,
  mappings: Array<{ columns?: ColumnMapping }>,
  config: PipelineConfig,
  allowEmpty = false,
): { valid: QaRow[]; quarantine: Array<QuarantineRecord & { file: string }>; counts: QaFileCounts[] } {
  const valid: QaRow[] = [];
  const quarantine: Array<QuarantineRecord & { file: string }> = [];
  const counts = files.map(({ path, records }, n) => {
    const columns = mappings[n]!.columns ?? inheritedColumns(config.data.columns, records);
    const mapping = { ...config.data, columns };
    try {
      const result = validateRecords(records, mapping, `${list}[${n}].columns`);
      if (!(allowEmpty && result.stats.rowsIn === 0)) checkInvalidShare(result, mapping);
      valid.push(...result.rows.map((row) => ({ ...row, id: idPrefix(list, n) + row.id })));
      quarantine.push(...result.quarantine.map((record) => ({ file: path, ...record })));
      return { path, rowsIn: result.stats.rowsIn, quarantined: result.stats.quarantined, removedByCleaning: 0, duplicates: 0 };
    } catch (err) {
      if (err instanceof DatasetError) throw new DatasetError(`${qaFileKey(list, n, path)}: ${err.message}`);
      throw err;
    }
  });
  return { valid, quarantine, counts };
}

/** Cleans and deduplicates the files' valid rows by the pipeline's rules, counting each removal against its file. */
export function cleanQaFileRows(
  valid: QaRow[],
  config: PipelineConfig,
  counts: QaFileCounts[],
): { rows: GroupedRow[]; removed: RemovedRow[] } {
  const removed: RemovedRow[] = [];
  const cleaned = cleanRows(valid, config.clean);
  for (const { row, reason } of cleaned.removedRows) {
    counts[fileOf(row.id)]!.removedByCleaning++;
    removed.push({ row, reason });
  }
  const deduplicated = deduplicate(cleaned.rows, config.dedup);
  for (const entry of deduplicated.removedRows) {
    counts[fileOf(entry.row.id)]!.duplicates++;
    removed.push(entry);
  }
  return { rows: deduplicated.rows, removed };
}

/**
 * Which rows repeat a question of the data, and the data row (and its split) they repeat: rows
 * joined as near-duplicate questions (dedup's shingle similarity, keyed by the question's numbers
 * and model names) whose products do not differ. Joins are transitive, so a chain of similar
 * questions counts as one question: this errs towards a repeat, never towards leaking a held-out
 * answer. A held-out split wins over the training split when a row repeats both.
 */
export function repeatedQuestions(
  rows: GroupedRow[],
  data: Record<SplitName, GroupedRow[]>,
  config: PipelineConfig,
): Map<number, { split: SplitName; row: GroupedRow }> {
  const dataRows = (['train', 'validation', 'test'] as const).flatMap((split) => data[split].map((row) => ({ row, split })));
  const all = [...dataRows.map((d) => d.row), ...rows];
  const questions = all.map((row) => normalizeForMatch(row.question) || row.question);
  const keys = all.map((row) => numberTokens(row.question).join(' '));
  const joined = new UnionFind(all.length);
  // The same question joins even with near-duplicate detection off.
  for (const same of groupBy(all.keys(), (i) => `${keys[i]}\u0000${questions[i]}`).values())
    for (const i of same) joined.union(same[0]!, i);
  if (config.dedup.nearDuplicates.enabled) joinNearDuplicates([...all.keys()], questions, keys, config.dedup.nearDuplicates, joined);

  const product = (row: QaRow) => (row.product === null ? null : normalizeForMatch(row.product));
  const dataByRoot = groupBy(dataRows.keys(), (i) => String(joined.find(i)));
  const repeats = new Map<number, { split: SplitName; row: GroupedRow }>();
  rows.forEach((row, k) => {
    const own = product(row);
    // A held-out split wins: leaving a row out for it is the reason that matters to the evaluation.
    const matches = (dataByRoot.get(String(joined.find(dataRows.length + k))) ?? [])
      .map((i) => dataRows[i]!)
      .filter((d) => own === null || d.row.product === null || product(d.row) === own)
      .sort((a, b) => Number(a.split === 'train') - Number(b.split === 'train'));
    if (matches[0]) repeats.set(k, matches[0]);
  });
  return repeats;
}
