/**
 * Rows to and from Arrow IPC files (the file format, readable by pyarrow and arrow-js alike).
 */
import { readFile } from 'node:fs/promises';
import { Int32, Table, Utf8, tableFromIPC, tableToIPC, vectorFromArray, type Vector } from 'apache-arrow';
import { type StepStore } from '../artifacts';
import type { ArtifactRef } from '../../schemas/manifests';
import type { GroupedRow, QaRow } from '../../schemas/rows';

const textColumns = ['id', 'question', 'answer', 'category', 'product', 'fact'] as const;

export function rowsToTable(rows: ReadonlyArray<QaRow | GroupedRow>): Table {
  const columns: Record<string, Vector> = {};
  for (const name of textColumns)
    columns[name] = vectorFromArray(
      rows.map((r) => r[name]),
      new Utf8(),
    );
  columns.sourceRow = vectorFromArray(
    rows.map((r) => r.sourceRow),
    new Int32(),
  );
  if (rows.length > 0 && 'groupId' in rows[0]!) {
    columns.groupId = vectorFromArray(
      rows.map((r) => (r as GroupedRow).groupId),
      new Utf8(),
    );
  }
  return new Table(columns);
}

export async function writeRows(store: StepStore, rows: ReadonlyArray<QaRow | GroupedRow>): Promise<ArtifactRef> {
  return store.put(tableToIPC(rowsToTable(rows), 'file'), '.arrow', rows.length);
}

export function tableToRows<R extends QaRow>(table: Table): R[] {
  const out: R[] = [];
  const cols = table.schema.fields.map((f) => [f.name, table.getChild(f.name)!] as const);
  for (let i = 0; i < table.numRows; i++) {
    const row: Record<string, unknown> = {};
    for (const [name, col] of cols) row[name] = col.get(i) ?? null;
    out.push(row as R);
  }
  return out;
}

export async function readRows<R extends QaRow = GroupedRow>(store: StepStore, ref: Pick<ArtifactRef, 'uri' | 'sha256'>): Promise<R[]> {
  return tableToRows<R>(tableFromIPC(await readFile(await store.fetch(ref))));
}
