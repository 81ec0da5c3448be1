/**
 * Knowledge files for the retriever: validated, cleaned and deduplicated by the data's rules, every
 * row accounted for, and a pair that repeats a question of the data left out (a held-out question's
 * answer must not reach the evaluation through the index), while different facts (another number,
 * another product) stay.
 */
import { describe, expect, it } from 'vitest';
import { DatasetError } from '../../activities/data/ingest';
import { prepareKnowledge } from '../../activities/data/knowledge';
import type { SourceRecord } from '../../activities/data/readers';
import { PipelineConfig } from '../../schemas/config';
import type { GroupedRow, SplitName } from '../../schemas/rows';
import { dataRow, records } from './qa-fixtures';

const config = (knowledge: object[], data: object = {}) =>
  PipelineConfig.parse({ name: 'x', data: { sample: { rows: 10 }, columns: { product: 'product' }, ...data }, retrieval: { knowledge } });

const data: Record<SplitName, GroupedRow[]> = {
  train: [
    dataRow('row-1', 'How do I descale the Brewmaster kettle?', 'Run a cycle with vinegar.', 'kettle'),
    dataRow('row-2', 'Does the filter fit model 3?', 'Yes, it fits model 3.'),
  ],
  validation: [dataRow('row-3', 'Can the drone fly in light rain?', 'No, keep it dry.', 'drone')],
  test: [dataRow('row-4', 'How long does the router warranty last?', 'Two years.', 'router')],
};

describe('knowledge files', () => {
  const faq = records([
    { question: 'Is the kettle dishwasher safe?', answer: '<p>No, wipe it with a damp cloth.</p>', product: 'kettle' },
    { question: 'Is the kettle dishwasher safe?', answer: 'No, wipe it with a damp cloth.', product: 'kettle' }, // duplicate
    { question: "How long does the router's warranty last", answer: 'Two years from purchase.', product: 'router' }, // repeats test, reworded
    { question: 'How do I descale the Brewmaster kettle??', answer: 'Use citric acid.', product: 'kettle' }, // repeats train
    { question: 'How do I descale the Brewmaster kettle?', answer: 'Use the descale program.', product: 'toaster' }, // other product
    { question: 'Does the filter fit model 4?', answer: 'No, only model 3.' }, // another number: another fact
    { question: 'What colour is the drone?', answer: 17 }, // bad row
  ]);
  const manual = records([
    { question: 'Can the drone fly in light rain', answer: 'It is not waterproof.' }, // no product: repeats validation
    { question: 'What does the red light on the router mean?', answer: 'It has no internet connection.', product: 'router' },
  ]);

  it('keeps new facts, sets aside repeats of the data and bad rows, and accounts for every row', () => {
    const result = prepareKnowledge(
      [
        { path: 'faq.jsonl', records: faq },
        { path: 'manual.jsonl', records: manual },
      ],
      data,
      config([{ path: 'faq.jsonl' }, { path: 'manual.jsonl' }], { maxInvalidFraction: 0.2 }),
    );
    expect(result.rows.map((r) => [r.id, r.question, r.answer, r.product])).toEqual([
      ['k1:row-1', 'Is the kettle dishwasher safe?', 'No, wipe it with a damp cloth.', 'kettle'],
      ['k1:row-5', 'How do I descale the Brewmaster kettle?', 'Use the descale program.', 'toaster'],
      ['k1:row-6', 'Does the filter fit model 4?', 'No, only model 3.', null],
      ['k2:row-2', 'What does the red light on the router mean?', 'It has no internet connection.', 'router'],
    ]);
    expect(result.quarantine).toEqual([expect.objectContaining({ file: 'faq.jsonl', sourceRow: 7, kind: 'wrong-type' })]);
    expect(Object.fromEntries(result.removed.map((r) => [r.row.id, [r.reason, r.duplicateOf]]))).toEqual({
      'k1:row-2': ['exact duplicate', 'k1:row-1'],
      'k1:row-3': ['repeats a test question (held out, as the question is)', 'row-4'],
      'k1:row-4': ["repeats a training question (the data's answer is used)", 'row-1'],
      'k2:row-1': ['repeats a validation question (held out, as the question is)', 'row-3'],
    });
    expect(result.files).toEqual([
      {
        path: 'faq.jsonl',
        rowsIn: 7,
        quarantined: 1,
        removedByCleaning: 0,
        duplicates: 1,
        repeatsData: { train: 1, validation: 0, test: 1 },
        indexed: 3,
      },
      {
        path: 'manual.jsonl',
        rowsIn: 2,
        quarantined: 0,
        removedByCleaning: 0,
        duplicates: 0,
        repeatsData: { train: 0, validation: 1, test: 0 },
        indexed: 1,
      },
    ]);
  });

  it("cleans by the pipeline's rules: a low-information cluster goes, the rest stays", () => {
    const rows = records([
      ...Array.from({ length: 5 }, (_, i) => ({
        question: `Does the blender ${['crush ice', 'make soup', 'fit', 'ship', 'work'][i]}?`,
        answer: "I don't know.",
      })),
      { question: 'What is the blender warranty?', answer: 'Three years.' },
    ]);
    const result = prepareKnowledge([{ path: 'old-tickets.csv', records: rows }], data, config([{ path: 'old-tickets.csv' }]));
    expect(result.rows.map((r) => r.answer)).toEqual(['Three years.']);
    expect(result.removed.map((r) => r.reason)).toEqual(Array(5).fill('low-information'));
    expect(result.files[0]).toMatchObject({ rowsIn: 6, removedByCleaning: 5, indexed: 1 });
  });

  it('names the file and its key when a mapping or too many rows are wrong', () => {
    const good = records([{ question: 'Q?', answer: 'A.' }]);
    const wrongColumns = records([{ prompt: 'Q?', reply: 'A.' }]);
    const fail = (files: Array<{ path: string; records: SourceRecord[] }>) => {
      try {
        prepareKnowledge(files, data, config(files.map(({ path }) => ({ path }))));
      } catch (err) {
        expect(err).toBeInstanceOf(DatasetError);
        return (err as Error).message;
      }
      throw new Error('expected a DatasetError');
    };
    expect(
      fail([
        { path: 'a.csv', records: good },
        { path: 'b.csv', records: wrongColumns },
      ]),
    ).toMatch(
      /^retrieval\.knowledge\[1\] \(b\.csv\): retrieval\.knowledge\[1\]\.columns\.question is "question"; retrieval\.knowledge\[1\]\.columns\.answer is "answer", but no row has such a column\. Columns in the file: prompt, reply\./,
    );
    const mostlyBad = records([{ question: 'Q?', answer: 'A.' }, { question: 'Q2?' }, { question: 'Q3?', answer: null }]);
    expect(fail([{ path: 'a.csv', records: mostlyBad }])).toMatch(
      /^retrieval\.knowledge\[0\] \(a\.csv\): 2 of 3 rows \(66\.7%\) are invalid/,
    );
  });
});
