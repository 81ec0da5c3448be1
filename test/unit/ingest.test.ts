import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataSection } from '../../schemas/config';
import { DatasetError, checkInvalidShare, validateRecords } from '../../activities/data/ingest';
import { detectFormat, readRecords, type SourceRecord } from '../../activities/data/readers';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const mapping = { question: 'q', answer: 'a', id: 'qid', category: 'type' };
const data = (extra: Record<string, unknown> = {}) => DataSection.parse({ path: 'x.jsonl', columns: mapping, ...extra });
const records = (...items: Array<Record<string, unknown>>): SourceRecord[] => items.map((record, i) => ({ sourceRow: i + 1, record }));

describe('readers', () => {
  it.each(['csv', 'jsonl', 'parquet', 'arrow'])('reads the same rows from %s', async (ext) => {
    const path = join(fixtures, `qa-small.${ext}`);
    const read = await readRecords(path, detectFormat(path, 'auto'));
    const result = validateRecords(read, data());
    expect(result.rows.map((r) => r.id)).toEqual(['a1', 'a2', 'a3', 'a5']);
    expect(result.rows[0]).toMatchObject({
      question: 'How do I pair the Nimbus Buds?',
      category: 'how-to',
      sourceRow: 1,
    });
    expect(result.quarantine).toHaveLength(1);
    expect(result.quarantine[0]).toMatchObject({ sourceRow: 4, kind: 'empty', reason: 'answer: empty text' });
  });

  it('names the fix for an unknown extension', () => {
    expect(() => detectFormat('data.xlsx', 'auto')).toThrow(/use \.csv, \.jsonl, \.parquet or \.arrow, or set data.format/);
  });

  it('respects maxRows', async () => {
    expect(await readRecords(join(fixtures, 'qa-small.jsonl'), 'jsonl', 2)).toHaveLength(2);
  });
});

describe('row validation', () => {
  const bad = records(
    { q: 'ok?', a: 'fine', qid: 1 },
    { q: 'no answer key' },
    { a: 'no question key' },
    { q: 'null answer', a: null },
    { q: 'number answer', a: 42 },
    { q: ['list', 'question'], a: 'x' },
    { q: { nested: true }, a: 'x' },
    { q: 'blank answer', a: '   ' },
    { q: 'long answer', a: 'x'.repeat(4001) },
    { q: 'x'.repeat(1001), a: 'long question' },
    { q: 'bad category', a: 'x', type: { a: 1 } },
  );

  it('quarantines every bad row kind with a reason naming the field, and loses none', () => {
    const unparseable: SourceRecord = { sourceRow: 12, unparseable: '{"q": "broken' };
    const result = validateRecords([...bad, unparseable], data());
    const reasons = Object.fromEntries(result.quarantine.map((q) => [q.sourceRow, q.reason]));
    expect(result.rows.map((r) => r.sourceRow)).toEqual([1]);
    expect(result.rows[0]!.id).toBe('1');
    expect(reasons).toEqual({
      2: 'answer: column "a" is missing',
      3: 'question: column "q" is missing',
      4: 'answer: column "a" is null',
      5: 'answer: expected text, found a number',
      6: 'question: expected text, found a list',
      7: 'question: expected text, found an object',
      8: 'answer: empty text',
      9: 'answer: 4001 characters, over the limit of 4000 (data.maxAnswerChars)',
      10: 'question: 1001 characters, over the limit of 1000 (data.maxQuestionChars)',
      11: 'category: expected text, found an object',
      12: 'row is not valid JSON',
    });
    expect(result.stats.quarantinedByKind).toEqual({
      'missing-field': 3,
      'wrong-type': 4,
      empty: 1,
      'too-long': 2,
      unparseable: 1,
    });
    expect(result.stats.rowsIn).toBe(result.stats.valid + result.stats.quarantined);
    expect(result.quarantine[8]!.raw.length).toBeLessThanOrEqual(2001);
  });

  it('gives rows without an id column a row-number id', () => {
    const result = validateRecords(records({ q: 'a', a: 'b' }), DataSection.parse({ path: 'x', columns: { question: 'q', answer: 'a' } }));
    expect(result.rows[0]!.id).toBe('row-1');
  });

  it('fails with the columns that exist when the mapping names a column no row has', () => {
    expect(() => validateRecords(records({ question: 'a', answer: 'b' }), data())).toThrow(
      /data.columns.question is "q".*Columns in the file: answer, question/,
    );
  });

  it('fails non-retryably when the bad share is over the limit, saying how many and why', () => {
    const result = validateRecords(bad, data());
    expect(() => checkInvalidShare(result, data())).toThrow(DatasetError);
    expect(() => checkInvalidShare(result, data())).toThrow(
      /10 of 11 rows \(90\.9%\) are invalid.*4 wrong-type, 3 missing-field, 2 too-long, 1 empty/,
    );
    expect(() => checkInvalidShare(result, data({ maxInvalidFraction: 0.95 }))).not.toThrow();
  });
});
