/**
 * The shape of one question-answer pair once it has been read and validated. Every stage after
 * ingest reads and writes rows of this shape (as Arrow IPC files in the artifact store).
 */
import { z } from 'zod';

export const QaRow = z.object({
  id: z.string().describe('Stable row id: the source id column, or `row-<n>` from the source row number.'),
  sourceRow: z.number().int().describe('1-based row number in the source file, for tracing a row back.'),
  question: z.string(),
  answer: z.string(),
  category: z.string().nullable().describe('Category or question type, when the data has one.'),
  product: z.string().nullable().describe('Product the question is about, when the data has one.'),
  fact: z.string().nullable().describe('Checkable fact the answer must contain, when the data has one.'),
});
export type QaRow = z.infer<typeof QaRow>;

/** A row after deduplication: `groupId` ties near duplicates and conflicts together for the split. */
export type GroupedRow = QaRow & { groupId: string };

/** A row after splitting. */
export type SplitName = 'train' | 'validation' | 'test';

/** Why a source row was set aside; one line per row in the quarantine file. */
export const QuarantineRecord = z.object({
  sourceRow: z.number().int(),
  reason: z.string().describe('What is wrong, naming the field, e.g. `answer: expected text, found number`.'),
  kind: z
    .enum(['missing-field', 'wrong-type', 'empty', 'too-long', 'unparseable', 'invalid-encoding'])
    .describe('`invalid-encoding`: the row holds bytes that are not UTF-8 (the file is partly or wholly in another encoding).'),
  raw: z.string().describe('The row as read, JSON-encoded and cut to 2,000 characters.'),
});
export type QuarantineRecord = z.infer<typeof QuarantineRecord>;
