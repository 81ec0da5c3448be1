/**
 * Reads a dataset file into plain records, choosing the reader by extension: CSV, JSONL, Parquet
 * or Arrow IPC. A row that cannot be parsed (a JSONL line that is not a JSON object, a CSV row with
 * more or fewer fields than the header) or holds bytes that are not UTF-8 is returned as such, to be
 * quarantined, never silently dropped; a file that cannot be read as its format at all (a CSV quote
 * never closed, a header that is not UTF-8, UTF-16 text, a broken Parquet or Arrow file) is a
 * DatasetError naming the file, the line where there is one, and the fix: retrying cannot help.
 */
import { isUtf8 } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { CsvError, parse as parseCsv } from 'csv-parse/sync';
import { tableFromIPC } from 'apache-arrow';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { extensionOf } from '../artifacts';
import { DatasetError } from './ingest';

export type DataFormat = 'csv' | 'jsonl' | 'parquet' | 'arrow';

/** A record of the file, or a row that cannot be one: quarantined with its kind, reason and raw text, never dropped. */
export type SourceRecord =
  | { sourceRow: number; record: Record<string, unknown> }
  | { sourceRow: number; unparseable: string; reason: string; kind: 'unparseable' | 'invalid-encoding' };

const formatByExtension: Record<string, DataFormat> = {
  '.csv': 'csv',
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.parquet': 'parquet',
  '.arrow': 'arrow',
  '.feather': 'arrow',
  '.ipc': 'arrow',
};

export class UnsupportedFormatError extends Error {}

export function detectFormat(path: string, declared: DataFormat | 'auto'): DataFormat {
  if (declared !== 'auto') return declared;
  const format = formatByExtension[extensionOf(path)];
  if (!format) {
    throw new UnsupportedFormatError(
      `cannot tell the format of ${path} from its extension; use .csv, .jsonl, .parquet or .arrow, or set data.format`,
    );
  }
  return format;
}

/**
 * The file's records, at most `maxRows`. `shownPath` is the file as the user knows it, for messages,
 * when `path` is a copy of it (a snapshot named by its hash).
 */
export async function readRecords(path: string, format: DataFormat, maxRows?: number, shownPath = path): Promise<SourceRecord[]> {
  const name = basename(shownPath);
  const records = await readByFormat(path, name, format);
  if (records.length === 0) {
    throw new DatasetError(
      `${name} has no rows: the file is empty${format === 'csv' ? ' or holds only its header' : ''}. ` +
        'Check that data.path in temporal.yaml names the data file, or export the data again.',
    );
  }
  return maxRows === undefined ? records : records.slice(0, maxRows);
}

async function readByFormat(path: string, name: string, format: DataFormat): Promise<SourceRecord[]> {
  switch (format) {
    case 'jsonl':
      return readJsonl(name, await readFile(path));
    case 'csv':
      return readCsv(name, await readFile(path));
    case 'parquet':
      return asUnreadable(name, 'Parquet', async () => {
        const file = await asyncBufferFromFile(path);
        const rows = (await parquetReadObjects({ file })) as Record<string, unknown>[];
        return rows.map((record, i) => ({ sourceRow: i + 1, record: plainValues(record) }));
      });
    case 'arrow': {
      const bytes = await readFile(path);
      return asUnreadable(name, 'Arrow IPC', async () => {
        const table = tableFromIPC(bytes);
        const out: SourceRecord[] = [];
        for (let i = 0; i < table.numRows; i++) out.push({ sourceRow: i + 1, record: plainValues(table.get(i)!.toJSON()) });
        return out;
      });
    }
  }
}

/**
 * CSV with a header row. Rows are records keyed by the header; `sourceRow` counts records, not
 * lines (a quoted field may span lines). Stray quotes inside a field (`5" screen`) are kept as text.
 * A row with more or fewer fields than the header is returned unparsed, for the quarantine.
 */
function readCsv(name: string, bytes: Buffer): SourceRecord[] {
  const badLines = linesNotUtf8(name, bytes, 'Export it again as "CSV UTF-8", or convert it with iconv -f UTF-16 -t UTF-8.');
  // Where the last complete record (the header included) ended: a record that never ends starts on the next line.
  let lastRecordEndLine = 0;
  let header: string[] = [];
  const endLines: number[] = []; // the line each record ends on, header first
  try {
    const [first, ...rows] = parseCsv(bytes, {
      bom: true,
      skip_empty_lines: true,
      relax_quotes: true,
      relax_column_count: true,
      on_record: (fields: string[], context) => {
        lastRecordEndLine = context.lines;
        endLines.push(context.lines);
        if (header.length === 0) header = fields;
        return fields;
      },
    }) as string[][];
    if (!first) return [];
    // Records and bad lines both ascend, so one pointer walks the bad lines once.
    let next = 0;
    const firstBadLine = (from: number, to: number): number | undefined => {
      while (next < badLines.length && badLines[next]! < from) next++;
      return next < badLines.length && badLines[next]! <= to ? badLines[next] : undefined;
    };
    const badHeaderLine = firstBadLine(1, endLines[0]!);
    if (badHeaderLine !== undefined) {
      throw new DatasetError(
        `${name} line ${badHeaderLine}: the header is not valid UTF-8 text (the file is in another encoding, such as ` +
          'Windows-1252 or Latin-1). Export it again as "CSV UTF-8", or convert it with iconv -f WINDOWS-1252 -t UTF-8.',
      );
    }
    return rows.map((fields, i): SourceRecord => {
      // A record runs from the line after the previous one ends (blank lines before it included) to its own end.
      const badLine = firstBadLine(endLines[i]! + 1, endLines[i + 1]!);
      if (badLine !== undefined)
        return { sourceRow: i + 1, unparseable: fields.join(','), reason: notUtf8(badLine), kind: 'invalid-encoding' };
      if (fields.length === header.length)
        return { sourceRow: i + 1, record: Object.fromEntries(header.map((column, n) => [column, fields[n]])) };
      const reason = `line ${endLines[i + 1]}: ${fields.length} fields where the header has ${header.length} (an unquoted comma in a field?)`;
      return { sourceRow: i + 1, unparseable: fields.join(','), reason, kind: 'unparseable' };
    });
  } catch (err) {
    if (!(err instanceof CsvError)) throw err;
    throw new DatasetError(csvProblem(name, err, lastRecordEndLine));
  }
}

function csvProblem(file: string, err: CsvError, lastRecordEndLine: number): string {
  const lines = typeof err.lines === 'number' ? err.lines : '?';
  switch (err.code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return (
        `${file} line ${lastRecordEndLine + 1}: unclosed quote (a field starts with " but never ends). ` +
        'Fix the quoting in the file, or export it again as CSV with quotes escaped by doubling them.'
      );
    default:
      return `${file} line ${lines}: not valid CSV (${err.message}). Fix that line, or export the file again as CSV with a header row.`;
  }
}

/**
 * The 1-based numbers of the lines holding bytes that are not UTF-8, ascending; none for a UTF-8
 * file. Decoding turns such bytes into U+FFFD silently, so the rows on these lines are quarantined
 * instead and the rest of the file is read: one pasted Windows-1252 quote should not cost the file.
 * Splitting at 0x0A is safe: no byte of a multi-byte UTF-8 character is below 0x80. UTF-16 text (a
 * byte-order mark) is not a few stray bytes but every character laid out differently: a whole-file
 * error.
 */
function linesNotUtf8(file: string, bytes: Buffer, utf16Fix: string): number[] {
  const bad: number[] = [];
  if (isUtf8(bytes)) return bad;
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    throw new DatasetError(`${file} is UTF-16 text, not UTF-8. ${utf16Fix}`);
  }
  for (let line = 1, start = 0; start <= bytes.length; line++) {
    const end = bytes.indexOf(0x0a, start);
    const stop = end === -1 ? bytes.length : end;
    if (!isUtf8(bytes.subarray(start, stop))) bad.push(line);
    start = stop + 1;
  }
  return bad;
}

const notUtf8 = (line: number) => `line ${line}: not valid UTF-8 text (bytes in another encoding, such as Windows-1252 or Latin-1)`;

/** A Parquet or Arrow reader failing on the file's contents; errors from the file system stay crashes. */
async function asUnreadable(name: string, what: string, read: () => Promise<SourceRecord[]>): Promise<SourceRecord[]> {
  try {
    return await read();
  } catch (err) {
    if (err && typeof err === 'object' && 'syscall' in err) throw err;
    throw new DatasetError(
      `${name}: not a readable ${what} file (${(err as Error).message}). ` +
        `Check that data.path names the right file, or write it again as ${what} (or as CSV or JSONL).`,
    );
  }
}

function readJsonl(name: string, bytes: Buffer): SourceRecord[] {
  const badLines = new Set(linesNotUtf8(name, bytes, 'Convert it with iconv -f UTF-16 -t UTF-8.'));
  const out: SourceRecord[] = [];
  const lines = bytes.toString('utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    if (badLines.has(i + 1)) {
      out.push({ sourceRow: i + 1, unparseable: line, reason: notUtf8(i + 1), kind: 'invalid-encoding' });
      continue;
    }
    try {
      const value: unknown = JSON.parse(line);
      if (value && typeof value === 'object' && !Array.isArray(value))
        out.push({ sourceRow: i + 1, record: value as Record<string, unknown> });
      else out.push({ sourceRow: i + 1, unparseable: line, reason: 'line is JSON but not an object', kind: 'unparseable' });
    } catch {
      out.push({ sourceRow: i + 1, unparseable: line, reason: 'row is not valid JSON', kind: 'unparseable' });
    }
  }
  return out;
}

/** Arrow and Parquet give BigInt for 64-bit integers; plain numbers keep later checks simple. */
function plainValues(record: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(record)) out[k] = typeof v === 'bigint' ? Number(v) : v;
  return out;
}
