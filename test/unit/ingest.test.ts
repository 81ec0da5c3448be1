import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

describe('malformed files are data errors naming the file, the line and the fix', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tuneline-readers-'));
  const file = (name: string, contents: string | Buffer) => {
    const path = join(dir, name);
    writeFileSync(path, contents);
    return path;
  };
  const failure = async (path: string) => {
    const error = await readRecords(path, detectFormat(path, 'auto')).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(DatasetError);
    return (error as Error).message;
  };
  const lines = (n: number) => Array.from({ length: n }, (_, i) => `q${i},a${i}`).join('\n');

  it('a CSV quote that never closes names the line where its field starts', async () => {
    const path = file('data.csv', `q,a\n${lines(15)}\n"How do I reset it?,Hold the button\nq17,a17\n`);
    expect(await failure(path)).toBe(
      'data.csv line 17: unclosed quote (a field starts with " but never ends). ' +
        'Fix the quoting in the file, or export it again as CSV with quotes escaped by doubling them.',
    );
  });

  it('a CSV quote left open in the last field of a row', async () => {
    const path = file('open-answer.csv', 'q,a\nq1,a1\nq2,"a2 with a line break\nq3,a3\n');
    expect(await failure(path)).toMatch(/^open-answer\.csv line 3: unclosed quote/);
  });

  it('quarantines CSV rows with more or fewer fields than the header, naming the line, and keeps the rest', async () => {
    const path = file('ragged.csv', 'question,answer\nq1,a1\nHow do I reset?,Hold the button, then release it\nq3\nq4,a4\n');
    const records = await readRecords(path, 'csv');
    expect(records).toEqual([
      { sourceRow: 1, record: { question: 'q1', answer: 'a1' } },
      {
        sourceRow: 2,
        unparseable: 'How do I reset?,Hold the button, then release it',
        reason: 'line 3: 3 fields where the header has 2 (an unquoted comma in a field?)',
        kind: 'unparseable',
      },
      {
        sourceRow: 3,
        unparseable: 'q3',
        reason: 'line 4: 1 fields where the header has 2 (an unquoted comma in a field?)',
        kind: 'unparseable',
      },
      { sourceRow: 4, record: { question: 'q4', answer: 'a4' } },
    ]);
    const result = validateRecords(records, DataSection.parse({ path: 'ragged.csv' }));
    expect(result.rows.map((r) => r.question)).toEqual(['q1', 'q4']);
    expect(result.quarantine.map((q) => [q.sourceRow, q.kind, q.reason])).toEqual([
      [2, 'unparseable', 'line 3: 3 fields where the header has 2 (an unquoted comma in a field?)'],
      [3, 'unparseable', 'line 4: 1 fields where the header has 2 (an unquoted comma in a field?)'],
    ]);
  });

  it('a CSV in UTF-16 says so', async () => {
    const path = file('utf16.csv', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('q,a\nq1,a1\n', 'utf16le')]));
    expect(await failure(path)).toMatch(/^utf16\.csv is UTF-16 text, not UTF-8\. Export it again as "CSV UTF-8"/);
  });

  it('a JSONL file in UTF-16 says so', async () => {
    const path = file('utf16.jsonl', Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from('{"q":"q1","a":"a1"}\n', 'utf16le').swap16()]));
    expect(await failure(path)).toBe('utf16.jsonl is UTF-16 text, not UTF-8. Convert it with iconv -f UTF-16 -t UTF-8.');
  });

  it('a CSV header that is not UTF-8 fails the file: no column could be trusted', async () => {
    const path = file('latin-header.csv', Buffer.concat([Buffer.from('q,r'), Buffer.from([0xe9]), Buffer.from('ponse\nq1,a1\n')]));
    expect(await failure(path)).toMatch(
      /^latin-header\.csv line 1: the header is not valid UTF-8 text .*iconv -f WINDOWS-1252 -t UTF-8\.$/,
    );
  });
  it('stray quotes inside a CSV field are text, and a UTF-8 BOM is skipped', async () => {
    const path = file('stray.csv', '\uFEFFq,a\nIs the 55" TV wall-mountable?,Yes\n');
    expect(await readRecords(path, 'csv')).toEqual([{ sourceRow: 1, record: { q: 'Is the 55" TV wall-mountable?', a: 'Yes' } }]);
  });

  it('a Parquet file that is not Parquet', async () => {
    expect(await failure(file('data.parquet', 'q,a\nq1,a1\n'))).toMatch(
      /^data\.parquet: not a readable Parquet file \(.+\)\. Check that data\.path names the right file, or write it again as Parquet/,
    );
  });

  it('a truncated Parquet file', async () => {
    const whole = readFileSync(join(fixtures, 'qa-small.parquet'));
    expect(await failure(file('cut.parquet', whole.subarray(0, whole.length - 30)))).toMatch(/^cut\.parquet: not a readable Parquet file/);
  });

  it('an Arrow file that is not Arrow, or is cut short', async () => {
    expect(await failure(file('data.arrow', 'this is text, not Arrow IPC\n'))).toMatch(
      /^data\.arrow: not a readable Arrow IPC file \(.+\)\./,
    );
    const whole = readFileSync(join(fixtures, 'qa-small.arrow'));
    expect(await failure(file('cut.arrow', whole.subarray(0, 200)))).toMatch(/^cut\.arrow: not a readable Arrow IPC file/);
  });

  it.each([
    ['empty.csv', '', 'empty.csv has no rows: the file is empty or holds only its header.'],
    ['header-only.csv', 'q,a\n', 'header-only.csv has no rows: the file is empty or holds only its header.'],
    ['empty.jsonl', '\n\n', 'empty.jsonl has no rows: the file is empty.'],
  ])('%s with no rows says so, naming the file', async (name, contents, message) => {
    expect(await failure(file(name, contents))).toBe(
      `${message} Check that data.path in temporal.yaml names the data file, or export the data again.`,
    );
  });

  it('names the file as the user knows it when reading a copy of it', async () => {
    const copy = file('3f9a0c.csv', 'q,a\n"never closed\n');
    const error = await readRecords(copy, 'csv', undefined, '/home/me/data/questions.csv').catch((err: Error) => err);
    expect((error as Error).message).toMatch(/^questions\.csv line 2: unclosed quote/);
  });

  it('a missing file stays an error of the file system, not a data error', async () => {
    const error = await readRecords(join(dir, 'absent.parquet'), 'parquet').catch((err: unknown) => err);
    expect(error).not.toBeInstanceOf(DatasetError);
    expect(error).toMatchObject({ code: 'ENOENT' });
  });
});

describe('rows that are not UTF-8 are quarantined, and the rest of the file is read', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tuneline-encoding-'));
  const file = (name: string, ...parts: Array<string | number[]>) => {
    const path = join(dir, name);
    writeFileSync(path, Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part) : Buffer.from(part)))));
    return path;
  };
  const notUtf8 = (line: number) => `line ${line}: not valid UTF-8 text (bytes in another encoding, such as Windows-1252 or Latin-1)`;
  const csvData = DataSection.parse({ path: 'x.csv' });

  it('a CSV with one Windows-1252 byte quarantines that row as invalid-encoding, naming its line', async () => {
    // 0xE9 is "é" in Windows-1252; row 3 is a quoted answer spanning lines 4-5, with the bad byte on line 5.
    const path = file('latin.csv', 'question,answer\nq1,a1\nq2,caf', [0xe9], '\nq3,"two\nlines ', [0x92], 's"\nq4,a4\n');
    const read = await readRecords(path, 'csv');
    expect(read).toEqual([
      { sourceRow: 1, record: { question: 'q1', answer: 'a1' } },
      { sourceRow: 2, unparseable: 'q2,caf\uFFFD', reason: notUtf8(3), kind: 'invalid-encoding' },
      { sourceRow: 3, unparseable: 'q3,two\nlines \uFFFDs', reason: notUtf8(5), kind: 'invalid-encoding' },
      { sourceRow: 4, record: { question: 'q4', answer: 'a4' } },
    ]);
    const result = validateRecords(read, csvData);
    expect(result.rows.map((r) => r.question)).toEqual(['q1', 'q4']);
    expect(result.quarantine.map((q) => [q.sourceRow, q.kind, q.reason])).toEqual([
      [2, 'invalid-encoding', notUtf8(3)],
      [3, 'invalid-encoding', notUtf8(5)],
    ]);
    expect(result.stats.quarantinedByKind).toEqual({ 'invalid-encoding': 2 });
  });

  it('a JSONL line with bytes that are not UTF-8 is quarantined as invalid-encoding', async () => {
    const path = file(
      'mixed.jsonl',
      '{"q":"q1","a":"a1"}\n{"q":"q2","a":"caf',
      [0xe9],
      '"}\n\n{"q":"q4","a":"na',
      [0xc3, 0x28],
      've"}\n{"q":"q5","a":"a5"}\n',
    );
    const read = await readRecords(path, 'jsonl');
    expect(read.map((r) => ('record' in r ? [r.sourceRow, 'record'] : [r.sourceRow, r.kind, r.reason]))).toEqual([
      [1, 'record'],
      [2, 'invalid-encoding', notUtf8(2)],
      [4, 'invalid-encoding', notUtf8(4)],
      [5, 'record'],
    ]);
    const result = validateRecords(read, data({ columns: { question: 'q', answer: 'a' } }));
    expect(result.rows.map((r) => r.sourceRow)).toEqual([1, 5]);
    expect(result.stats).toMatchObject({ rowsIn: 4, valid: 2, quarantined: 2, quarantinedByKind: { 'invalid-encoding': 2 } });
    expect(result.quarantine[0]).toMatchObject({ sourceRow: 2, raw: '{"q":"q2","a":"caf\uFFFD"}' });
  });

  it('a file saved in another encoding fails the invalid-share check, suggesting how to convert it', async () => {
    const rows = Array.from({ length: 10 }, (_, i) => (i < 3 ? ['q', String(i), ',caf', [0xe9], '\n'] : [`q${i},a${i}\n`])).flat();
    const result = validateRecords(await readRecords(file('cp1252.csv', 'question,answer\n', ...rows), 'csv'), csvData);
    expect(() => checkInvalidShare(result, csvData)).toThrow(
      '3 of 10 rows (30.0%) are invalid, over data.maxInvalidFraction (5.0%): 3 invalid-encoding. ' +
        `First: row 1: ${notUtf8(2)}. 3 of them hold bytes that are not UTF-8: the file was saved in another encoding. ` +
        'Convert it to UTF-8 (iconv -f WINDOWS-1252 -t UTF-8 old-file > new-file, naming the encoding it was saved in) or ' +
        'export it again as "CSV UTF-8"; otherwise fix the data or the column mapping, or raise data.maxInvalidFraction.',
    );
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
    const unparseable: SourceRecord = { sourceRow: 12, unparseable: '{"q": "broken', reason: 'row is not valid JSON', kind: 'unparseable' };
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
