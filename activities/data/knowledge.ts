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
import type { PipelineConfig } from '../../schemas/config';
import type { GroupedRow, QuarantineRecord, SplitName } from '../../schemas/rows';
import { cleanQaFileRows, fileOf, repeatedQuestions, validateQaFiles, type QaFileCounts, type RemovedRow } from './qa-files';
import type { SourceRecord } from './readers';

export interface KnowledgeFileStats extends QaFileCounts {
  /** Pairs left out because the data asks the same question, by the split that holds it. */
  repeatsData: Record<SplitName, number>;
  indexed: number;
}

export interface KnowledgeResult {
  rows: GroupedRow[];
  quarantine: Array<QuarantineRecord & { file: string }>;
  removed: RemovedRow[];
  files: KnowledgeFileStats[];
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
  const { valid, quarantine, counts } = validateQaFiles('retrieval.knowledge', files, config.retrieval.knowledge, config);
  const stats: KnowledgeFileStats[] = counts.map((c) => ({ ...c, repeatsData: { train: 0, validation: 0, test: 0 }, indexed: 0 }));
  const { rows: deduplicated, removed } = cleanQaFileRows(valid, config, stats);

  const repeats = repeatedQuestions(deduplicated, data, config);
  const rows: GroupedRow[] = [];
  deduplicated.forEach((row, k) => {
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
      duplicateOf: repeat.row.id,
    });
  });
  return { rows, quarantine, removed, files: stats };
}
