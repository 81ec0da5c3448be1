/**
 * Ingest and validate: source records become QaRows through the YAML's column mapping; a record
 * that breaks the row schema goes to quarantine with every reason, so no row is lost unexplained.
 */
import type { DataSection } from '../../schemas/config';
import type { QaRow, QuarantineRecord } from '../../schemas/rows';
import type { SourceRecord } from './readers';

export interface IngestStats {
  rowsIn: number;
  valid: number;
  quarantined: number;
  quarantinedByKind: Record<string, number>;
}

export interface IngestResult {
  rows: QaRow[];
  quarantine: QuarantineRecord[];
  stats: IngestStats;
}

/** A problem with the dataset as a whole (not one row): a person must fix the file or the mapping. */
export class DatasetError extends Error {}

type Problem = Pick<QuarantineRecord, 'kind' | 'reason'>;

const describeType = (v: unknown) =>
  v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;

function requiredText(record: Record<string, unknown>, column: string, field: string, maxChars: number, problems: Problem[]): string {
  if (!(column in record) || record[column] === undefined) {
    problems.push({ kind: 'missing-field', reason: `${field}: column "${column}" is missing` });
    return '';
  }
  const value = record[column];
  if (value === null) {
    problems.push({ kind: 'missing-field', reason: `${field}: column "${column}" is null` });
    return '';
  }
  if (typeof value !== 'string') {
    problems.push({ kind: 'wrong-type', reason: `${field}: expected text, found ${describeType(value)}` });
    return '';
  }
  if (value.trim() === '') problems.push({ kind: 'empty', reason: `${field}: empty text` });
  else if (value.length > maxChars) {
    problems.push({
      kind: 'too-long',
      reason: `${field}: ${value.length} characters, over the limit of ${maxChars} (data.max${field === 'question' ? 'Question' : 'Answer'}Chars)`,
    });
  }
  return value;
}

function optionalText(record: Record<string, unknown>, column: string | undefined, field: string, problems: Problem[]): string | null {
  if (column === undefined) return null;
  const value = record[column];
  if (value === undefined || value === null || value === '') return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  problems.push({ kind: 'wrong-type', reason: `${field}: expected text, found ${describeType(value)}` });
  return null;
}

function rawText(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
}

/**
 * A mapped column that no record has at all is a mapping mistake, not bad rows: fail with the
 * columns that do exist so the fix is obvious.
 */
function checkColumnsExist(records: SourceRecord[], data: DataSection, columnsKey: string): void {
  const seen = new Set<string>();
  for (const r of records) if ('record' in r) for (const k of Object.keys(r.record)) seen.add(k);
  if (seen.size === 0) return;
  const missing = Object.entries(data.columns)
    .filter(([, column]) => column !== undefined && !seen.has(column))
    .map(([field, column]) => `${columnsKey}.${field} is "${column}"`);
  if (missing.length > 0) {
    throw new DatasetError(
      `${missing.join('; ')}, but no row has such a column. Columns in the file: ${[...seen].sort().join(', ')}. ` +
        'Fix the column mapping in temporal.yaml.',
    );
  }
}

/** `columnsKey` names the mapping in errors: `data.columns`, or a knowledge file's. */
export function validateRecords(records: SourceRecord[], data: DataSection, columnsKey = 'data.columns'): IngestResult {
  checkColumnsExist(records, data, columnsKey);
  const rows: QaRow[] = [];
  const quarantine: QuarantineRecord[] = [];
  const { columns } = data;
  for (const source of records) {
    if ('unparseable' in source) {
      quarantine.push({
        sourceRow: source.sourceRow,
        kind: source.kind,
        reason: source.reason,
        raw: rawText(source.unparseable),
      });
      continue;
    }
    const { record, sourceRow } = source;
    const problems: Problem[] = [];
    const question = requiredText(record, columns.question, 'question', data.maxQuestionChars, problems);
    const answer = requiredText(record, columns.answer, 'answer', data.maxAnswerChars, problems);
    const id = optionalText(record, columns.id, 'id', problems) ?? `row-${sourceRow}`;
    const category = optionalText(record, columns.category, 'category', problems);
    const product = optionalText(record, columns.product, 'product', problems);
    const fact = optionalText(record, columns.fact, 'fact', problems);
    if (problems.length > 0) {
      quarantine.push({ sourceRow, kind: problems[0]!.kind, reason: problems.map((p) => p.reason).join('; '), raw: rawText(record) });
    } else {
      rows.push({ id, sourceRow, question, answer, category, product, fact });
    }
  }
  const quarantinedByKind: Record<string, number> = {};
  for (const q of quarantine) quarantinedByKind[q.kind] = (quarantinedByKind[q.kind] ?? 0) + 1;
  return { rows, quarantine, stats: { rowsIn: records.length, valid: rows.length, quarantined: quarantine.length, quarantinedByKind } };
}

/** Throws a DatasetError when the bad share is over the configured maximum. */
export function checkInvalidShare(result: IngestResult, data: DataSection): void {
  const { rowsIn, quarantined, quarantinedByKind } = result.stats;
  if (rowsIn === 0) throw new DatasetError('the dataset has no rows; check data.path');
  const share = quarantined / rowsIn;
  if (share > data.maxInvalidFraction) {
    const kinds = Object.entries(quarantinedByKind)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${n} ${k}`)
      .join(', ');
    // Rows that are not UTF-8 mean a file saved in another encoding: converting it fixes them all at once.
    const notUtf8 = quarantinedByKind['invalid-encoding'] ?? 0;
    const fix =
      notUtf8 === 0
        ? 'Fix the data or the column mapping, or raise data.maxInvalidFraction.'
        : `${notUtf8} of them hold bytes that are not UTF-8: the file was saved in another encoding. Convert it to UTF-8 ` +
          '(iconv -f WINDOWS-1252 -t UTF-8 old-file > new-file, naming the encoding it was saved in) or export it again as ' +
          '"CSV UTF-8"; otherwise fix the data or the column mapping, or raise data.maxInvalidFraction.';
    const example = result.quarantine[0];
    throw new DatasetError(
      `${quarantined} of ${rowsIn} rows (${(share * 100).toFixed(1)}%) are invalid, over data.maxInvalidFraction ` +
        `(${(data.maxInvalidFraction * 100).toFixed(1)}%): ${kinds}. First: row ${example?.sourceRow}: ${example?.reason}. ` +
        fix,
    );
  }
}
