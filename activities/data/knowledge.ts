/**
 * Knowledge files (`retrieval.knowledge`): extra question-answer pairs the retriever searches beside
 * the training split, never trained on or evaluated. Pure: records in, rows out, with every row
 * accounted for.
 *
 * Each file's records are validated as the data's are (a bad row is quarantined, too many fail the
 * run), then all files' rows are cleaned and deduplicated by the pipeline's own `clean` and `dedup`
 * rules. Last, a pair whose question repeats a question of the data is left out: for a training
 * question the data's answer is already in the index (and grounded training must not be handed the
 * row's own answer under another id); a validation or test question stays held out, as the split
 * keeps it from the training split. Repeats are near-duplicate questions with the same numbers and
 * model names, about the same product when both rows name one.
 */
import type { ColumnMapping, PipelineConfig } from '../../schemas/config';
import type { GroupedRow, QaRow, QuarantineRecord, SplitName } from '../../schemas/rows';
import { cleanRows } from './clean';
import { deduplicate, normalizeForMatch, numberTokens } from './dedup';
import { DatasetError, checkInvalidShare, validateRecords } from './ingest';
import { UnionFind, groupBy, joinNearDuplicates } from './minhash';
import type { SourceRecord } from './readers';

export interface KnowledgeFileStats {
  /** The file as configured. */
  path: string;
  rowsIn: number;
  quarantined: number;
  removedByCleaning: number;
  duplicates: number;
  /** Pairs left out because the data asks the same question, by the split that holds it. */
  repeatsData: Record<SplitName, number>;
  indexed: number;
}

export interface KnowledgeResult {
  rows: GroupedRow[];
  quarantine: Array<QuarantineRecord & { file: string }>;
  removed: Array<{ row: QaRow; reason: string; duplicateOf?: string }>;
  files: KnowledgeFileStats[];
}

/** The key of a knowledge file in messages: `retrieval.knowledge[0] (faq.csv)`. */
export const knowledgeKey = (n: number, path: string) => `retrieval.knowledge[${n}] (${path})`;

/** Knowledge row ids name their file, so they never collide with the data's or each other's: `k1:row-7`. */
const idPrefix = (n: number) => `k${n + 1}:`;
const fileOf = (id: string) => Number(id.slice(1, id.indexOf(':'))) - 1;

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
 * Which knowledge rows repeat a question of the data: rows joined as near-duplicate questions
 * (dedup's shingle similarity, keyed by the question's numbers and model names) whose products do
 * not differ. Joins are transitive, so a chain of similar questions counts as one question: this
 * errs towards leaving a pair out, never towards leaking a held-out answer.
 */
function repeatedQuestions(
  knowledge: GroupedRow[],
  data: Record<SplitName, GroupedRow[]>,
  config: PipelineConfig,
): Map<number, { split: SplitName; id: string }> {
  const dataRows = (['train', 'validation', 'test'] as const).flatMap((split) => data[split].map((row) => ({ row, split })));
  const all = [...dataRows.map((d) => d.row), ...knowledge];
  const questions = all.map((row) => normalizeForMatch(row.question) || row.question);
  const keys = all.map((row) => numberTokens(row.question).join(' '));
  const joined = new UnionFind(all.length);
  // The same question joins even with near-duplicate detection off.
  for (const same of groupBy(all.keys(), (i) => `${keys[i]}\u0000${questions[i]}`).values())
    for (const i of same) joined.union(same[0]!, i);
  if (config.dedup.nearDuplicates.enabled) joinNearDuplicates([...all.keys()], questions, keys, config.dedup.nearDuplicates, joined);

  const product = (row: QaRow) => (row.product === null ? null : normalizeForMatch(row.product));
  const dataByRoot = groupBy(dataRows.keys(), (i) => String(joined.find(i)));
  const repeats = new Map<number, { split: SplitName; id: string }>();
  knowledge.forEach((row, k) => {
    const own = product(row);
    // A held-out split wins: leaving a pair out for it is the reason that matters to the evaluation.
    const matches = (dataByRoot.get(String(joined.find(dataRows.length + k))) ?? [])
      .map((i) => dataRows[i]!)
      .filter((d) => own === null || d.row.product === null || product(d.row) === own)
      .sort((a, b) => Number(a.split === 'train') - Number(b.split === 'train'));
    if (matches[0]) repeats.set(k, { split: matches[0].split, id: matches[0].row.id });
  });
  return repeats;
}

/**
 * The knowledge rows of `files` (each file's records, in `retrieval.knowledge` order) given the
 * data's splits. Throws a DatasetError naming the file when too many of its rows are invalid or
 * its column mapping names a column no row has.
 */
export function prepareKnowledge(
  files: Array<{ path: string; records: SourceRecord[] }>,
  data: Record<SplitName, GroupedRow[]>,
  config: PipelineConfig,
): KnowledgeResult {
  const stats: KnowledgeFileStats[] = [];
  const quarantine: KnowledgeResult['quarantine'] = [];
  const valid: QaRow[] = [];
  files.forEach(({ path, records }, n) => {
    const columns = config.retrieval.knowledge[n]!.columns ?? inheritedColumns(config.data.columns, records);
    const mapping = { ...config.data, columns };
    const key = knowledgeKey(n, path);
    try {
      const result = validateRecords(records, mapping, `retrieval.knowledge[${n}].columns`);
      checkInvalidShare(result, mapping);
      valid.push(...result.rows.map((row) => ({ ...row, id: idPrefix(n) + row.id })));
      quarantine.push(...result.quarantine.map((record) => ({ file: path, ...record })));
      stats.push({
        path,
        rowsIn: result.stats.rowsIn,
        quarantined: result.stats.quarantined,
        removedByCleaning: 0,
        duplicates: 0,
        repeatsData: { train: 0, validation: 0, test: 0 },
        indexed: 0,
      });
    } catch (err) {
      if (err instanceof DatasetError) throw new DatasetError(`${key}: ${err.message}`);
      throw err;
    }
  });

  const removed: KnowledgeResult['removed'] = [];
  const cleaned = cleanRows(valid, config.clean);
  for (const { row, reason } of cleaned.removedRows) {
    stats[fileOf(row.id)]!.removedByCleaning++;
    removed.push({ row, reason });
  }
  const deduplicated = deduplicate(cleaned.rows, config.dedup);
  for (const entry of deduplicated.removedRows) {
    stats[fileOf(entry.row.id)]!.duplicates++;
    removed.push(entry);
  }

  const repeats = repeatedQuestions(deduplicated.rows, data, config);
  const rows: GroupedRow[] = [];
  deduplicated.rows.forEach((row, k) => {
    const file = stats[fileOf(row.id)]!;
    const repeat = repeats.get(k);
    if (repeat === undefined) {
      rows.push(row);
      file.indexed++;
      return;
    }
    file.repeatsData[repeat.split]++;
    const { groupId: _groupId, ...plain } = row;
    removed.push({
      row: plain,
      reason:
        repeat.split === 'train'
          ? "repeats a training question (the data's answer is used)"
          : `repeats a ${repeat.split} question (held out, as the question is)`,
      duplicateOf: repeat.id,
    });
  });
  return { rows, quarantine, removed, files: stats };
}
