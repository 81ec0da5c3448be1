// Retrieval indexes: the embedding index's exact top k against a full sort, exclusion, the Arrow file,
// and the lexical index against a full sort of Jaccard similarities.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../lib/seeded-random';
import { createDotScanner } from '../../serve/dot-scan';
import { INDEX_METADATA_KEY, indexToTable, loadEmbeddingIndex, saveEmbeddingIndex } from '../../serve/index-file';
import { normalizeQuestion, shingles } from '../../serve/lexical-index';
import { EmbeddingIndex, LexicalIndex, TopK, lexicalRetriever, type RetrievalRow } from '../../serve/retriever';

const root = join(import.meta.dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'tuneline-retriever-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const row = (n: number, question = `question ${n}`, groupId = `g${n % 7}`): RetrievalRow => ({
  id: `r${n}`,
  question,
  answer: `answer ${n}`,
  groupId,
});

/** `count` seeded random unit vectors of `dims`, one Float32Array. */
function unitVectors(count: number, dims: number, seed: number): Float32Array {
  const random = mulberry32(seed);
  const vectors = new Float32Array(count * dims);
  for (let n = 0; n < count; n++) {
    let norm = 0;
    for (let d = 0; d < dims; d++) norm += (vectors[n * dims + d] = random.next() * 2 - 1) ** 2;
    for (let d = 0; d < dims; d++) vectors[n * dims + d]! /= Math.sqrt(norm);
  }
  return vectors;
}

/** Every row scored the way the index scores (float32 products summed in double), fully sorted. */
function referenceTopK(index: EmbeddingIndex, query: Float32Array, k: number, exclude: (row: RetrievalRow) => boolean = () => false) {
  const scored = index.rows.map((candidate, position) => {
    let score = 0;
    for (let d = 0; d < index.dims; d++) score += index.vectors[position * index.dims + d]! * query[d]!;
    return { position, score, excluded: exclude(candidate) };
  });
  return scored
    .filter((entry) => !entry.excluded)
    .sort((a, b) => b.score - a.score || a.position - b.position)
    .slice(0, k);
}

describe('TopK', () => {
  it('keeps the k best, the earlier position first on equal scores', () => {
    const best = new TopK(3);
    for (const [score, position] of [
      [0.5, 4],
      [0.9, 7],
      [0.5, 2],
      [0.1, 0],
      [0.9, 1],
      [0.5, 3],
    ] as const)
      if (best.accepts(score, position)) best.insert(score, position);
    const rows = Array.from({ length: 8 }, (_, n) => row(n));
    expect(best.hits(rows).map((hit) => [hit.score, hit.position])).toEqual([
      [0.9, 1],
      [0.9, 7],
      [0.5, 2],
    ]);
    expect(() => new TopK(0)).toThrow(/k: 0; must be a whole number >= 1/);
  });
});

describe('dot-product scanners', () => {
  it('score alike in WebAssembly SIMD and in JavaScript', () => {
    const dims = 384;
    const vectors = unitVectors(500, dims, 3);
    const simd = createDotScanner(vectors, dims);
    const javascript = createDotScanner(vectors, dims, { simd: false });
    expect([simd.simd, javascript.simd]).toEqual([true, false]);
    expect(simd.vectors).toEqual(vectors);
    const query = unitVectors(1, dims, 4);
    const [a, b] = [Array.from(simd.scores(query)), Array.from(javascript.scores(query))];
    a.forEach((score, n) => expect(score).toBeCloseTo(b[n]!, 6)); // float32 sums against float64 sums
    expect(createDotScanner(new Float32Array(0), dims).scores(query)).toHaveLength(0);
    expect(createDotScanner(unitVectors(3, 30, 5), 30).simd).toBe(false); // not a multiple of 8
  });
});

describe.each([
  ['JavaScript', 30], // not a multiple of 4: the scan's remainder loop counts too
  ['WebAssembly SIMD', 32],
])('EmbeddingIndex (%s scan)', (_, dims) => {
  const rows = Array.from({ length: 2000 }, (_, n) => row(n));
  const index = new EmbeddingIndex(rows, unitVectors(rows.length, dims, 1), dims, 'test-model');
  const queries = unitVectors(25, dims, 2);
  const query = (n: number) => queries.subarray(n * dims, (n + 1) * dims);

  it('finds exactly the top k of a full sort, for every k', () => {
    for (let n = 0; n < 25; n++) {
      for (const k of [1, 5, 37]) {
        const hits = index.search(query(n), k);
        const reference = referenceTopK(index, query(n), k);
        expect(hits.map((hit) => hit.position)).toEqual(reference.map((entry) => entry.position));
        hits.forEach((hit, rank) => expect(hit.score).toBeCloseTo(reference[rank]!.score, 6)); // summed in another order
        expect(hits.every((hit) => hit.row === rows[hit.position])).toBe(true);
      }
    }
  });

  it('ranks equal vectors by row order and returns every row when k exceeds them', () => {
    const same = query(0);
    const other = query(1);
    const tied = new EmbeddingIndex([row(0), row(1), row(2)], new Float32Array([...other, ...same, ...same]), dims, 'test-model');
    expect(tied.search(same, 10).map((hit) => hit.position)).toEqual([1, 2, 0]);
  });

  it('skips excluded rows and still returns k', () => {
    const exclude = (candidate: RetrievalRow) => candidate.groupId === 'g3' || candidate.id === 'r5';
    for (let n = 0; n < 10; n++) {
      const hits = index.search(query(n), 8, exclude);
      expect(hits).toHaveLength(8);
      expect(hits.some((hit) => exclude(hit.row))).toBe(false);
      expect(hits.map((hit) => hit.position)).toEqual(referenceTopK(index, query(n), 8, exclude).map((entry) => entry.position));
    }
    expect(index.search(query(0), 3, () => true)).toEqual([]);
  });

  it('refuses vectors and queries of the wrong size', () => {
    expect(() => new EmbeddingIndex([row(0)], new Float32Array(3), 2, 'm')).toThrow(/3 vector components for 1 rows of 2; expected 2/);
    expect(() => index.search(new Float32Array(4), 1)).toThrow(`query has 4 components; this index holds vectors of ${dims}`);
  });

  it('round-trips through an Arrow IPC file, written atomically', async () => {
    const file = join(dir, `index-${dims}.arrow`);
    await saveEmbeddingIndex(file, index);
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    const loaded = await loadEmbeddingIndex(file);
    expect(loaded.rows).toEqual(rows);
    expect(loaded.dims).toBe(dims);
    expect(loaded.model).toBe('test-model');
    expect(loaded.vectors).toEqual(index.vectors);
    expect(loaded.search(query(3), 5)).toEqual(index.search(query(3), 5));
    const vectorField = indexToTable(index).schema.fields.find((field) => field.name === 'vector')!;
    expect(String(vectorField.type)).toBe(`FixedSizeList[${dims}]<Float32>`);
  });

  it('names what is wrong with a file that is not an index', async () => {
    const table = indexToTable(index);
    table.schema.metadata.delete(INDEX_METADATA_KEY);
    const { tableToIPC } = await import('apache-arrow');
    const file = join(dir, `no-metadata-${dims}.arrow`);
    writeFileSync(file, tableToIPC(table, 'file'));
    await expect(loadEmbeddingIndex(file)).rejects.toThrow(
      /not an embedding index \(schema metadata tuneline.embedding-index lacks model and dims/,
    );
  });
});

describe('LexicalIndex', () => {
  const questions = [
    'How do I reset my router?',
    'how do i   RESET my router',
    'What is the warranty on the headphones?',
    'Is the speaker waterproof?',
    'hi',
    '',
    'Café crème 😀 and naïve façade',
    'tabs\tand\u0085next-line\x1fseparators',
    'zero\ufeffwidth no-break space',
    'Can I return the smart watch?',
    'Can I return the smart watch?',
    'Why won’t my e-reader turn on?',
  ];
  const rows = questions.map((question, n) => row(n, question, `g${n}`));
  const index = new LexicalIndex(rows);
  const queries = [
    'how do I reset the router',
    'warranty for headphones?',
    'Is the SPEAKER water proof',
    'hi',
    'h',
    '',
    'cafe creme 😀',
    'tabs and next-line',
    'zero width',
    'return the smart watch',
    'completely unrelated: qqq',
    'why wont my e reader turn on',
  ];

  it('normalises as Python does: lower case, str.split() whitespace, code points', () => {
    expect(normalizeQuestion('  How\tDO  i\nreset ')).toBe('how do i reset');
    expect(normalizeQuestion('a\u0085b\x1cc\u3000d')).toBe('a b c d'); // Python whitespace JavaScript's \s lacks
    expect(normalizeQuestion('a\ufeffb')).toBe('a\ufeffb'); // and one \s has that Python's split keeps
    expect([...shingles('ab')]).toEqual(['ab']);
    expect([...shingles('')]).toEqual(['']);
    expect([...shingles('a😀bc')]).toEqual(['a😀b', '😀bc']);
  });

  it('ranks the top k as a full sort of Jaccard similarities does, then rows sharing nothing in order', () => {
    const jaccard = (a: Set<string>, b: Set<string>) => {
      const shared = [...a].filter((gram) => b.has(gram)).length;
      return shared / (a.size + b.size - shared);
    };
    for (const query of queries) {
      const grams = shingles(query);
      const reference = questions
        .map((question, position) => ({ position, score: jaccard(grams, shingles(question)) }))
        .sort((a, b) => b.score - a.score || a.position - b.position);
      expect(index.search(query, questions.length).map((hit) => [hit.position, hit.score])).toEqual(
        reference.map((entry) => [entry.position, entry.score]),
      );
    }
  });

  it('skips excluded rows, and a retriever excludes per question', async () => {
    const hits = index.search('Can I return the smart watch?', 2, (candidate) => candidate.id === 'r9');
    expect(hits[0]!.position).toBe(10); // the identical question, r9 itself excluded
    expect(hits[0]!.score).toBe(1);
    expect(hits.map((hit) => hit.row.id)).not.toContain('r9');
    const retriever = lexicalRetriever(index);
    const results = await retriever.retrieve([questions[0]!, questions[9]!], 1, (candidate, n) => candidate.id === `r${[0, 9][n]}`);
    expect(results.map((found) => found[0]!.position)).toEqual([1, 10]);
  });

  it('retrieves for thousands of questions a chunk at a time, reporting progress, each question excluding its own rows', async () => {
    const rows = Array.from({ length: 50 }, (_, n) => row(n, `how do I reset model ${n}`));
    const retriever = lexicalRetriever(new LexicalIndex(rows));
    // 2,500 questions, each the question of row n % 50, which it must never be given: chunks of 1,024 keep the numbering.
    const asked = Array.from({ length: 2500 }, (_, n) => rows[n % 50]!.question);
    const progress: Array<[number, number]> = [];
    const hits = await retriever.retrieve(
      asked,
      1,
      (candidate, n) => candidate.id === `r${n % 50}`,
      undefined,
      (done, total) => progress.push([done, total]),
    );
    expect(progress).toEqual([
      [1024, 2500],
      [2048, 2500],
      [2500, 2500],
    ]);
    expect(hits).toHaveLength(2500);
    hits.forEach((found, n) => {
      expect(found).toHaveLength(1);
      expect(found[0]!.row.id).not.toBe(`r${n % 50}`);
    });
    expect(hits[2049]![0]).toEqual((await retriever.retrieve([asked[2049]!], 1, (candidate) => candidate.id === 'r49'))[0]![0]);
  });

  it('ranks preferred rows first (the best of them, then the best of the rest), never an excluded one', async () => {
    const retriever = lexicalRetriever(index);
    const query = questions[9]!; // its best match is itself (r9), then r10
    const unpreferred = (await retriever.retrieve([query], 3))[0]!.map((hit) => hit.row.id);
    const preferred = new Set(['r3', 'r5']);
    const [hits] = await retriever.retrieve(
      [query],
      3,
      (row) => row.id === 'r5',
      (row) => preferred.has(row.id),
    );
    const ids = hits!.map((hit) => hit.row.id);
    expect(ids[0]).toBe('r3'); // the only preferred row left, however weak
    expect(ids.slice(1)).toEqual(unpreferred.filter((id) => !preferred.has(id)).slice(0, 2));
    expect(ids).not.toContain('r5');
  });
});
