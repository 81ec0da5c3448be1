/**
 * An embedding index as an Arrow IPC file (readable by pyarrow and arrow-js alike): the columns id,
 * question, answer, groupId (strings) and vector (FixedSizeList<Float32>[dims]), one row per indexed
 * question, and in the schema's metadata which model made the vectors. Written to a temp file, synced
 * and renamed, so a reader never sees half an index.
 */
import { randomUUID } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  DataType,
  Field,
  FixedSizeList,
  Float32,
  Precision,
  Table,
  Utf8,
  makeData,
  makeVector,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
  type Vector,
} from 'apache-arrow';
import { EmbeddingIndex } from './retriever';
import type { RetrievalRow } from './top-k';

/** Schema metadata key: JSON {model, dims, normalised}. */
export const INDEX_METADATA_KEY = 'tuneline.embedding-index';
const TEXT_COLUMNS = ['id', 'question', 'answer', 'groupId'] as const;

export function indexToTable(index: EmbeddingIndex): Table {
  const columns: Record<string, Vector> = {};
  for (const name of TEXT_COLUMNS)
    columns[name] = vectorFromArray(
      index.rows.map((row) => row[name]),
      new Utf8(),
    );
  const values = makeData({ type: new Float32(), length: index.vectors.length, data: index.vectors });
  columns.vector = makeVector(
    makeData({
      type: new FixedSizeList(index.dims, new Field('item', new Float32(), false)),
      length: index.rows.length,
      nullCount: 0,
      child: values,
    }),
  );
  const table = new Table(columns);
  table.schema.metadata.set(INDEX_METADATA_KEY, JSON.stringify({ model: index.model, dims: index.dims, normalised: true }));
  return table;
}

/** Writes the index to `file` atomically (temp file, fsync, rename). */
export async function saveEmbeddingIndex(file: string, index: EmbeddingIndex): Promise<void> {
  const bytes = tableToIPC(indexToTable(index), 'file');
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID()}.tmp`);
  try {
    const handle = await open(temporary, 'w');
    try {
      await handle.write(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/** Every vector of the column in one Float32Array (a view when the file holds one record batch). */
function vectorValues(column: Vector, rows: number, dims: number): Float32Array {
  const chunks = column.data.map((chunk) => {
    const child = chunk.children[0]!;
    const start = child.offset + chunk.offset * dims;
    return (child.values as Float32Array).subarray(start, start + chunk.length * dims);
  });
  if (chunks.length === 1) return chunks[0]!;
  const values = new Float32Array(rows * dims);
  let at = 0;
  for (const chunk of chunks) {
    values.set(chunk, at);
    at += chunk.length;
  }
  return values;
}

/** Reads an index that saveEmbeddingIndex wrote; a file of another shape is an error that names what is wrong. */
export async function loadEmbeddingIndex(file: string): Promise<EmbeddingIndex> {
  const table = tableFromIPC(await readFile(file));
  const problems: string[] = [];
  let meta: { model?: unknown; dims?: unknown } = {};
  try {
    meta = JSON.parse(table.schema.metadata.get(INDEX_METADATA_KEY) ?? 'null') ?? {};
  } catch {
    problems.push(`schema metadata ${INDEX_METADATA_KEY} is not JSON`);
  }
  const dims = meta.dims;
  if (typeof meta.model !== 'string' || typeof dims !== 'number')
    problems.push(`schema metadata ${INDEX_METADATA_KEY} lacks model and dims`);
  for (const name of TEXT_COLUMNS) {
    const type = table.schema.fields.find((field) => field.name === name)?.type;
    if (!type || !DataType.isUtf8(type)) problems.push(`column ${name}: ${type ? `is ${type}, not Utf8` : 'missing'}`);
  }
  const vectorType = table.schema.fields.find((field) => field.name === 'vector')?.type;
  const item = vectorType && DataType.isFixedSizeList(vectorType) ? vectorType.children[0]?.type : undefined;
  const floats = item !== undefined && DataType.isFloat(item) && item.precision === Precision.SINGLE;
  if (!floats || (vectorType as FixedSizeList).listSize !== dims)
    problems.push(`column vector: ${vectorType ? `is ${vectorType}` : 'missing'}; expected FixedSizeList[${String(dims)}]<Float32>`);
  if (problems.length > 0) throw new Error(`${file}: not an embedding index (${problems.join('; ')}); build and save it again`);

  const columns = TEXT_COLUMNS.map((name) => table.getChild(name)!.toArray() as string[]);
  const rows: RetrievalRow[] = [];
  for (let n = 0; n < table.numRows; n++) {
    rows.push({ id: columns[0]![n]!, question: columns[1]![n]!, answer: columns[2]![n]!, groupId: columns[3]![n]! });
  }
  return new EmbeddingIndex(
    rows,
    vectorValues(table.getChild('vector')!, table.numRows, dims as number),
    dims as number,
    meta.model as string,
  );
}
