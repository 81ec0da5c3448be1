/**
 * Reads a dataset file into plain records, choosing the reader by extension: CSV, JSONL, Parquet
 * or Arrow IPC. A line that cannot be parsed is returned as such, never silently dropped.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseCsv } from 'csv-parse/sync';
import { tableFromIPC } from 'apache-arrow';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { extensionOf } from '../artifacts';

export type DataFormat = 'csv' | 'jsonl' | 'parquet' | 'arrow';

/** One source record, or the text of a line that could not be parsed. */
export type SourceRecord = { sourceRow: number; record: Record<string, unknown> } | { sourceRow: number; unparseable: string };

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

export async function readRecords(path: string, format: DataFormat, maxRows?: number): Promise<SourceRecord[]> {
  const records = await readByFormat(path, format);
  return maxRows === undefined ? records : records.slice(0, maxRows);
}

async function readByFormat(path: string, format: DataFormat): Promise<SourceRecord[]> {
  switch (format) {
    case 'jsonl':
      return readJsonl(await readFile(path, 'utf8'));
    case 'csv': {
      const rows = parseCsv(await readFile(path), {
        columns: true,
        bom: true,
        skip_empty_lines: true,
        relax_column_count: true,
        relax_quotes: true,
      }) as Record<string, unknown>[];
      return rows.map((record, i) => ({ sourceRow: i + 1, record }));
    }
    case 'parquet': {
      const file = await asyncBufferFromFile(path);
      const rows = (await parquetReadObjects({ file })) as Record<string, unknown>[];
      return rows.map((record, i) => ({ sourceRow: i + 1, record: plainValues(record) }));
    }
    case 'arrow': {
      const table = tableFromIPC(await readFile(path));
      const out: SourceRecord[] = [];
      for (let i = 0; i < table.numRows; i++) out.push({ sourceRow: i + 1, record: plainValues(table.get(i)!.toJSON()) });
      return out;
    }
  }
}

function readJsonl(text: string): SourceRecord[] {
  const out: SourceRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    try {
      const value: unknown = JSON.parse(line);
      if (value && typeof value === 'object' && !Array.isArray(value))
        out.push({ sourceRow: i + 1, record: value as Record<string, unknown> });
      else out.push({ sourceRow: i + 1, unparseable: `line is JSON but not an object: ${line}` });
    } catch {
      out.push({ sourceRow: i + 1, unparseable: line });
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
