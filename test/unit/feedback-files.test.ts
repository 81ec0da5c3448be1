/**
 * Feedback files for retraining: a rejected answer is never a target, a question the evaluation
 * holds out stays held out, bad rows are quarantined, and every row of every file is accounted for;
 * the rows that are added carry ids that name their file.
 */
import { describe, expect, it } from 'vitest';
import { prepareFeedback } from '../../activities/data/feedback';
import { DatasetError } from '../../activities/data/ingest';
import type { SourceRecord } from '../../activities/data/readers';
import { PipelineConfig } from '../../schemas/config';
import type { GroupedRow, SplitName } from '../../schemas/rows';
import { dataRow, records } from './qa-fixtures';

const config = (feedback: object[], data: object = {}) =>
  PipelineConfig.parse({ name: 'x', data: { sample: { rows: 10 }, columns: { id: 'id', product: 'product' }, feedback, ...data } });

const data: Record<SplitName, GroupedRow[]> = {
  train: [dataRow('row-1', 'How do I descale the Brewmaster kettle?', 'Run a cycle with vinegar.', 'kettle', 'group-row-1')],
  validation: [dataRow('row-3', 'Can the drone fly in light rain?', 'No, keep it dry.', 'drone')],
  test: [dataRow('row-4', 'How long does the router warranty last?', 'Two years.', 'router')],
};

/** Rows as `tuneline feedback export -o feedback.jsonl --include-rejected` writes them (fewer columns). */
const exported = records([
  { id: 'a1', question: 'Does the Vireo router support mesh?', answer: 'Yes, with a second Vireo unit.', rating: 'down', rejected: false },
  { id: 'a2', question: 'How do I descale the Brewmaster kettle?', answer: 'Use the descale program.', rating: 'down', rejected: false },
  { id: 'a3', question: 'Can the drone fly in light rain', answer: 'No, it is not waterproof.', rating: 'up', rejected: false },
  { id: 'a4', question: 'Is the kettle dishwasher safe?', answer: '', rating: 'down', rejected: true },
  { id: 'a5', question: 'Does the Vireo router support mesh?', answer: 'Yes, with a second Vireo unit.', rating: 'up', rejected: false },
  { id: 'a6', question: 'What colour is the drone?', answer: 17, rating: 'up', rejected: false },
]);
/** The same columns as CSV gives them: every value text. */
const exportedCsv = records([
  { id: 'b1', question: "How long does the router's warranty last", answer: 'Two years from purchase.', rejected: 'false' },
  { id: 'b2', question: 'Is the blender loud?', answer: '<b>About 80 dB</b> on high.', rejected: 'false' },
  { id: 'b3', question: 'Why is my TV dim?', answer: '', rejected: 'true' },
]);

describe('feedback files', () => {
  const files = [
    { path: 'feedback.jsonl', records: exported },
    { path: 'feedback.csv', records: exportedCsv },
  ];
  const result = prepareFeedback(files, data, config([{ path: 'feedback.jsonl' }, { path: 'feedback.csv' }], { maxInvalidFraction: 0.25 }));

  it('adds corrected and accepted answers under ids that name their file, a training repeat in its question group', () => {
    expect(result.rows.map((r) => [r.id, r.question, r.answer, r.groupId])).toEqual([
      ['f1:a1', 'Does the Vireo router support mesh?', 'Yes, with a second Vireo unit.', 'f1:a1'],
      ['f1:a2', 'How do I descale the Brewmaster kettle?', 'Use the descale program.', 'group-row-1'],
      ['f2:b2', 'Is the blender loud?', 'About 80 dB on high.', 'f2:b2'],
    ]);
  });

  it('leaves out rejected answers, held-out questions, duplicates and bad rows, each with its reason', () => {
    expect(result.removed).toEqual([
      { file: 'feedback.jsonl', sourceRow: 4, reason: 'rejected: rated down without a correction' },
      { file: 'feedback.csv', sourceRow: 3, reason: 'rejected: rated down without a correction' },
      expect.objectContaining({ row: expect.objectContaining({ id: 'f1:a5' }), reason: 'exact duplicate', duplicateOf: 'f1:a1' }),
      expect.objectContaining({
        row: expect.objectContaining({ id: 'f1:a3' }),
        reason: 'repeats a validation question (held out, as the question is)',
        duplicateOf: 'row-3',
      }),
      expect.objectContaining({
        row: expect.objectContaining({ id: 'f2:b1' }),
        reason: 'repeats a test question (held out, as the question is)',
        duplicateOf: 'row-4',
      }),
    ]);
    expect(result.quarantine).toEqual([expect.objectContaining({ file: 'feedback.jsonl', sourceRow: 6, kind: 'wrong-type' })]);
  });

  it('accounts for every row of every file', () => {
    expect(result.files).toEqual([
      {
        path: 'feedback.jsonl',
        rowsIn: 6,
        quarantined: 1,
        removedByCleaning: 0,
        duplicates: 1,
        rejected: 1,
        repeatsHeldOut: { validation: 1, test: 0 },
        added: 2,
      },
      {
        path: 'feedback.csv',
        rowsIn: 3,
        quarantined: 0,
        removedByCleaning: 0,
        duplicates: 0,
        rejected: 1,
        repeatsHeldOut: { validation: 0, test: 1 },
        added: 1,
      },
    ]);
  });

  it('adds nothing, and is no error, when an export has no rows or only rejected ones', () => {
    const empty = prepareFeedback(
      [
        { path: 'none.jsonl', records: [] },
        { path: 'rejected.jsonl', records: records([{ question: 'Q?', answer: '', rejected: true }]) },
      ],
      data,
      config([{ path: 'none.jsonl' }, { path: 'rejected.jsonl' }]),
    );
    expect(empty.rows).toEqual([]);
    expect(empty.files.map((f) => [f.rowsIn, f.rejected, f.added])).toEqual([
      [0, 0, 0],
      [1, 1, 0],
    ]);
  });

  it('fails naming the file and its key when too many rows are invalid or the mapping is wrong', () => {
    const fail = (file: { path: string; records: SourceRecord[] }, entry: object) => {
      try {
        prepareFeedback([file], data, config([entry]));
      } catch (err) {
        expect(err).toBeInstanceOf(DatasetError);
        return (err as Error).message;
      }
      throw new Error('expected a DatasetError');
    };
    const bad = records([
      { question: 'Q1?', answer: 'A.' },
      { question: 'Q2?', answer: 3 },
    ]);
    expect(fail({ path: 'bad.jsonl', records: bad }, { path: 'bad.jsonl' })).toMatch(
      /^data\.feedback\[0\] \(bad\.jsonl\): 1 of 2 rows \(50\.0%\) are invalid, over data\.maxInvalidFraction/,
    );
    const renamed = { path: 'renamed.csv', records: records([{ prompt: 'Q?', reply: 'A.' }]) };
    expect(fail(renamed, { path: 'renamed.csv', columns: { question: 'q', answer: 'reply' } })).toMatch(
      /^data\.feedback\[0\] \(renamed\.csv\): data\.feedback\[0\]\.columns\.question is "q", but no row has such a column/,
    );
  });
});
