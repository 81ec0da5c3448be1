/**
 * Feedback files (`data.feedback`): rated answers from `tuneline feedback export`, added to the
 * training split of a retraining run. Pure: records in, rows out, with every row accounted for.
 *
 * A row flagged `rejected` (rated down without a correction; its answer is empty) is left out
 * first: a rejected answer is never a target. The rest are validated, cleaned and deduplicated as
 * the data's are (`qa-files.ts`). A row whose question repeats a validation or test question is
 * left out, so the held-out question stays held out; one that repeats a training question is
 * added, in that question's group, so grounded training never hands either row the other's answer
 * as a known pair. Validation and test stay the data's own, so evaluations stay comparable.
 */
import type { PipelineConfig } from '../../schemas/config';
import type { GroupedRow, QuarantineRecord, SplitName } from '../../schemas/rows';
import { cleanQaFileRows, fileOf, repeatedQuestions, validateQaFiles, type QaFileCounts, type RemovedRow } from './qa-files';
import type { SourceRecord } from './readers';

export interface FeedbackFileStats extends QaFileCounts {
  /** Rows flagged `rejected`: an answer rated down without a correction, so no target. */
  rejected: number;
  /** Rows left out because their question is a held-out one, by the split that holds it. */
  repeatsHeldOut: Record<Exclude<SplitName, 'train'>, number>;
  /** Rows added to the training split. */
  added: number;
}

export interface FeedbackResult {
  /** The rows to add to the training split. */
  rows: GroupedRow[];
  quarantine: Array<QuarantineRecord & { file: string }>;
  /** Rows left out with the reason; a rejected row as its file and row number (it has no answer to show). */
  removed: Array<RemovedRow | { file: string; sourceRow: number; reason: string }>;
  files: FeedbackFileStats[];
}

/** The export writes `rejected` as a JSON boolean, or as the text `true` in CSV. */
const isRejected = (record: SourceRecord) => 'record' in record && String(record.record.rejected).trim().toLowerCase() === 'true';

/**
 * The feedback rows of `files` (each file's records, in `data.feedback` order) to add to the
 * training split, given the data's splits. Throws a DatasetError naming the file when too many of
 * its rows are invalid or its column mapping names a column no row has. An empty export (no new
 * ratings) adds nothing and is no error.
 */
export function prepareFeedback(
  files: Array<{ path: string; records: SourceRecord[] }>,
  data: Record<SplitName, GroupedRow[]>,
  config: PipelineConfig,
): FeedbackResult {
  const removed: FeedbackResult['removed'] = [];
  const candidates = files.map(({ path, records }) => {
    const kept: SourceRecord[] = [];
    for (const r of records)
      if (isRejected(r)) removed.push({ file: path, sourceRow: r.sourceRow, reason: 'rejected: rated down without a correction' });
      else kept.push(r);
    return { path, records: kept, rejected: records.length - kept.length };
  });
  const { valid, quarantine, counts } = validateQaFiles('data.feedback', candidates, config.data.feedback, config, true);
  const stats: FeedbackFileStats[] = counts.map((c, n) => ({
    ...c,
    rowsIn: c.rowsIn + candidates[n]!.rejected,
    rejected: candidates[n]!.rejected,
    repeatsHeldOut: { validation: 0, test: 0 },
    added: 0,
  }));
  const cleaned = cleanQaFileRows(valid, config, stats);
  removed.push(...cleaned.removed);

  const repeats = repeatedQuestions(cleaned.rows, data, config);
  const rows: GroupedRow[] = [];
  cleaned.rows.forEach((row, k) => {
    const file = stats[fileOf(row.id)]!;
    const repeat = repeats.get(k);
    if (repeat === undefined || repeat.split === 'train') {
      rows.push(repeat ? { ...row, groupId: repeat.row.groupId } : row);
      file.added++;
      return;
    }
    file.repeatsHeldOut[repeat.split]++;
    const { groupId: _groupId, ...plain } = row;
    removed.push({
      row: plain,
      reason: `repeats a ${repeat.split} question (held out, as the question is)`,
      duplicateOf: repeat.row.id,
    });
  });
  return { rows, quarantine, removed, files: stats };
}
