/** Rows for the tests of files read beside the data (knowledge, feedback): source records and split rows. */
import type { SourceRecord } from '../../activities/data/readers';
import type { GroupedRow } from '../../schemas/rows';

/** Records as a reader gives them, numbered from 1. */
export const records = (rows: Array<Record<string, unknown>>): SourceRecord[] => rows.map((record, i) => ({ sourceRow: i + 1, record }));

/** A row of the data's splits; its group is itself unless named. */
export const dataRow = (id: string, question: string, answer: string, product: string | null = null, groupId = id): GroupedRow => ({
  id,
  sourceRow: 1,
  question,
  answer,
  category: null,
  product,
  fact: null,
  groupId,
});
