import { describe, expect, it } from 'vitest';
import { deduplicate, normalizeForMatch, type DedupResult } from '../../activities/data/dedup';
import { jaccard, minHashSignature, shingleHashes } from '../../activities/data/minhash';
import { DedupSection } from '../../schemas/config';
import type { QaRow } from '../../schemas/rows';

let nextRow = 0;
function row(question: string, answer: string, extra: Partial<QaRow> = {}): QaRow {
  nextRow += 1;
  return {
    id: `r${nextRow}`,
    sourceRow: nextRow,
    question,
    answer,
    category: null,
    product: null,
    fact: null,
    ...extra,
  };
}
const config = (overrides: Record<string, unknown> = {}): DedupSection => DedupSection.parse(overrides);
const noNear = (overrides: Record<string, unknown> = {}): DedupSection => config({ nearDuplicates: { enabled: false }, ...overrides });
const ids = (rows: Array<{ id: string }>): string[] => rows.map((r) => r.id);

function expectBalanced(result: DedupResult, rowsIn: number): void {
  expect(result.stats.rowsIn).toBe(rowsIn);
  expect(result.stats.rowsOut).toBe(result.rows.length);
  expect(result.stats.rowsIn).toBe(result.stats.rowsOut + result.removedRows.length);
  // A groupId always names a row that is in the output, and that row is its own group's head.
  const out = new Map(result.rows.map((r) => [r.id, r]));
  for (const r of result.rows) expect(out.get(r.groupId)?.groupId).toBe(r.groupId);
}

describe('helpers', () => {
  it('normalizeForMatch lower-cases, strips punctuation and collapses spaces', () => {
    expect(normalizeForMatch('  How do I reset my Aurora-Pulse X3?!  ')).toBe('how do i reset my aurora pulse x3');
    expect(normalizeForMatch("Don't\tdo   that.")).toBe('dont do that');
    expect(normalizeForMatch('ＵＳＢ')).toBe('usb');
  });

  it('jaccard of shingle sets', () => {
    expect(jaccard(shingleHashes('abcd', 2), shingleHashes('abce', 2))).toBe(0.5); // {ab,bc} of {ab,bc,cd,ce}
    expect(jaccard(shingleHashes('same text', 3), shingleHashes('same text', 3))).toBe(1);
    expect(shingleHashes('ab', 3)).toHaveLength(1); // shorter than a shingle: one shingle
  });

  it('MinHash is deterministic and agrees more for similar texts', () => {
    const a = minHashSignature(shingleHashes('how do i reset my aurora pulse x3', 3), 100);
    const b = minHashSignature(shingleHashes('how do i reset my aurora pulse x 3', 3), 100);
    const c = minHashSignature(shingleHashes('what is the warranty on the nova tv', 3), 100);
    expect(minHashSignature(shingleHashes('how do i reset my aurora pulse x3', 3), 100)).toEqual(a);
    const agree = (x: Int32Array, y: Int32Array): number => x.filter((v, i) => v === y[i]).length;
    expect(agree(a, b)).toBeGreaterThan(60);
    expect(agree(a, c)).toBeLessThan(10);
  });
});

describe('exact duplicates', () => {
  it('removes later copies, keeps the first, counts them', () => {
    const rows = [row('How do I pair?', 'Hold the button.'), row('how do I pair', 'Hold the button'), row('Other?', 'Yes.')];
    const result = deduplicate(rows, noNear());
    expect(ids(result.rows)).toEqual([rows[0]!.id, rows[2]!.id]);
    expect(result.stats.exactDuplicates).toBe(1);
    expect(result.removedRows).toEqual([{ row: rows[1], reason: 'exact duplicate', duplicateOf: rows[0]!.id }]);
    expect(result.rows.map((r) => r.groupId)).toEqual(ids(result.rows)); // alone: own id
    expectBalanced(result, 3);
  });

  it('keeps copies in one group when `exact` is off', () => {
    const rows = [row('How do I pair?', 'Hold it.'), row('How do I pair?', 'Hold it.')];
    const result = deduplicate(rows, noNear({ exact: false }));
    expect(result.rows.map((r) => r.groupId)).toEqual([rows[0]!.id, rows[0]!.id]);
    expect(result.stats.exactDuplicates).toBe(0);
  });

  it('the same question about two products is not a duplicate', () => {
    const rows = [
      row('How do I reset it?', 'Hold power.', { product: 'Aurora Pulse X3' }),
      row('How do I reset it?', 'Hold power.', { product: 'Nova Buds' }),
      row('How do I reset it?', 'Hold power.', { product: 'aurora pulse x3' }),
    ];
    const result = deduplicate(rows, config());
    expect(ids(result.rows)).toEqual(ids(rows.slice(0, 2)));
    expectBalanced(result, 3);
  });
});

describe('near duplicates', () => {
  const answer = 'Hold the power button for 10 seconds.';
  const reset = (): QaRow[] => [
    row('How do I reset my Aurora Pulse X3?', answer),
    row('How can I reset my Aurora Pulse X3', answer),
    row('how do i reset my aurora pulse x-3', answer),
    row('How do I charge my Aurora Pulse X3?', 'Use the USB-C cable.'),
  ];

  it('groups paraphrases with the same answer and keeps the first (keep-one)', () => {
    // "do" vs "can" gives a 3-shingle Jaccard of 0.75: a near duplicate at 0.7, not at the default 0.8.
    const rows = reset();
    const result = deduplicate(rows, config({ nearDuplicates: { threshold: 0.7 } }));
    expect(ids(result.rows)).toEqual([rows[0]!.id, rows[3]!.id]);
    expect(result.removedRows.map((r) => [r.row.id, r.reason, r.duplicateOf])).toEqual([
      [rows[1]!.id, 'near duplicate', rows[0]!.id],
      [rows[2]!.id, 'near duplicate', rows[0]!.id],
    ]);
    expect(result.stats).toMatchObject({ nearDuplicates: 2, nearDuplicateGroups: 1, exactDuplicates: 0 });
    expectBalanced(result, 4);

    const strict = deduplicate(rows, config());
    expect(ids(strict.removedRows.map((r) => r.row))).toEqual([rows[2]!.id]); // Jaccard 0.91
  });

  it('keep-all keeps the paraphrases under one groupId', () => {
    const rows = reset();
    const result = deduplicate(rows, config({ nearDuplicates: { threshold: 0.7, policy: 'keep-all' } }));
    expect(result.rows.map((r) => r.groupId)).toEqual([rows[0]!.id, rows[0]!.id, rows[0]!.id, rows[3]!.id]);
    expect(result.stats).toMatchObject({ rowsOut: 4, nearDuplicates: 2, nearDuplicateGroups: 1 });
    expectBalanced(result, 4);
  });

  it('similar questions with different answers, or about other products, are not near duplicates', () => {
    const rows = [
      row('How do I reset my Aurora Pulse X3?', 'Hold power for 10 s.'),
      row('How do I reset my Aurora Pulse X5?', 'Press the pinhole button.'),
      row('How do I reset my Aurora Pulse X3?', 'Hold power for 10 s.', { product: 'Aurora' }),
      row('How do I reset my Aurora Pulse X3 now?', 'Hold power for 10 s.', { product: 'Nova' }),
    ];
    const result = deduplicate(rows, config({ nearDuplicates: { threshold: 0.5 } }));
    expect(ids(result.rows)).toEqual(ids(rows));
    expect(result.stats.nearDuplicateGroups).toBe(0);
  });

  it('joins a conflict partner to the group of the paraphrase it outlived', () => {
    const rows = [
      row('How do I reset my Aurora Pulse X3?', 'Hold power.'),
      row('how do i reset my aurora pulse x-3', 'Hold power.'), // near duplicate of the first
      row('how do i reset my aurora pulse x-3', 'Use the app.'), // conflicts with the second
    ];
    const result = deduplicate(rows, config({ conflicts: 'keep-all' }));
    expect(ids(result.rows)).toEqual([rows[0]!.id, rows[2]!.id]);
    expect(result.rows.map((r) => r.groupId)).toEqual([rows[0]!.id, rows[0]!.id]);
    expectBalanced(result, 3);
  });
});

describe('LSH candidates', () => {
  it('find every near-duplicate pair brute force finds, in answer groups too large for all-pairs checks', () => {
    const words = 'how do i reset pair charge update my the aurora pulse x3 nova buds screen battery app firmware'.split(' ');
    let seed = 7;
    const random = (): number => ((seed = (Math.imul(seed, 1664525) + 1013904223) | 0) >>> 0) / 2 ** 32;
    const rows = Array.from({ length: 1_200 }, () => {
      const topic = Math.floor(random() * 40);
      const length = 5 + Math.floor(random() * 6);
      const question = Array.from({ length }, (_, w) => {
        const jitter = random() < 0.15 ? Math.floor(random() * 4) : 0; // a changed word now and then
        return words[(topic * 7 + w * 3 + jitter) % words.length];
      }).join(' ');
      // 18 words, so topics 18 apart ask the same question; they get the same answer too (no conflicts).
      return row(`${question}${random() < 0.5 ? '?' : ''}`, `Answer ${topic % 18}.`); // ~67 rows per answer
    });
    const cfg = config({ exact: false, nearDuplicates: { policy: 'keep-all' } });
    const result = deduplicate(rows, cfg);
    expect(result.stats.conflictGroups).toBe(0);
    const groupOf = new Map(result.rows.map((r) => [r.id, r.groupId]));
    const shingles = rows.map((r) => shingleHashes(normalizeForMatch(r.question), 3));
    let pairs = 0;
    for (let i = 0; i < rows.length; i++) {
      for (let j = 0; j < i; j++) {
        if (rows[i]!.answer !== rows[j]!.answer || jaccard(shingles[i]!, shingles[j]!) < 0.8) continue;
        pairs++;
        expect(groupOf.get(rows[i]!.id)).toBe(groupOf.get(rows[j]!.id));
      }
    }
    expect(pairs).toBeGreaterThan(1_000);
    expect(deduplicate(rows, cfg)).toEqual(result); // deterministic
    // No false matches: a group never mixes answers.
    const answerOfGroup = new Map<string, string>();
    for (const r of result.rows)
      expect(answerOfGroup.set(r.groupId, answerOfGroup.get(r.groupId) ?? r.answer).get(r.groupId)).toBe(r.answer);
  });
});

describe('conflicts', () => {
  const conflicting = (): QaRow[] => [
    row('Is the X3 waterproof?', 'No.'),
    row('Is the X3 waterproof?', 'Yes, to 1 m.'),
    row('is the x3 waterproof', 'Yes, to 1 m.'),
    row('Does it ship abroad?', 'Yes.'),
  ];

  it('reports every conflict group with counts and row ids', () => {
    const rows = conflicting();
    const { conflicts, stats } = deduplicate(rows, noNear());
    expect(stats.conflictGroups).toBe(1);
    expect(conflicts[0]).toMatchObject({
      key: 'is the x3 waterproof',
      question: 'Is the X3 waterproof?',
      product: null,
      answers: [
        { answer: 'No.', count: 1, rowIds: [rows[0]!.id] },
        { answer: 'Yes, to 1 m.', count: 2, rowIds: [rows[1]!.id, rows[2]!.id] },
      ],
    });
    expect(conflicts[0]!.resolution).toMatch(/^majority: kept "Yes, to 1 m\." \(2 of 3 rows\)/);
  });

  it.each([
    ['majority', [1, 3], 1, 1],
    ['keep-first', [0, 3], 0, 2],
    ['drop', [3], 0, 3],
    ['keep-all', [0, 1, 3], 1, 0],
  ] as const)('policy %s', (policy, keptIndexes, exactRemoved, conflictRemoved) => {
    const rows = conflicting();
    const result = deduplicate(rows, noNear({ conflicts: policy }));
    expect(ids(result.rows)).toEqual(keptIndexes.map((i) => rows[i]!.id));
    expect(result.stats.exactDuplicates).toBe(exactRemoved);
    expect(result.stats.conflictRowsRemoved).toBe(conflictRemoved);
    expect(result.conflicts).toHaveLength(1);
    expectBalanced(result, 4);
    if (policy === 'keep-all') expect(result.rows.map((r) => r.groupId)).toEqual([rows[0]!.id, rows[0]!.id, rows[3]!.id]);
  });

  it('majority ties go to the answer seen first', () => {
    const rows = [row('Colour?', 'Black.'), row('Colour?', 'White.')];
    expect(ids(deduplicate(rows, noNear()).rows)).toEqual([rows[0]!.id]);
  });

  it('is per product', () => {
    const rows = [row('Battery life?', '10 h.', { product: 'A' }), row('Battery life?', '20 h.', { product: 'B' })];
    expect(deduplicate(rows, config()).stats.conflictGroups).toBe(0);
  });
});

describe('scale', () => {
  it('dedups 20,000 rows with 2,000 shared "Yes." answers in well under a few seconds', () => {
    const products = ['Aurora Pulse X3', 'Nova Buds', 'Zenith TV 55', 'Orbit Hub'];
    const rows: QaRow[] = [];
    for (let i = 0; i < 20_000; i++) {
      const product = products[i % products.length]!;
      // Every tenth row answers "Yes." to one of many similar questions: crowded LSH buckets. The
      // others share their answer with one other row, so every row goes through MinHash and LSH.
      if (i % 10 === 0) rows.push(row(`Does the ${product} support feature ${i}?`, 'Yes.', { product }));
      else rows.push(row(`Question ${i} about the ${product}, part ${(i * 7919) % 100_003}?`, `Answer ${i >> 3}.`, { product }));
    }
    const started = performance.now();
    const result = deduplicate(rows, config());
    const seconds = (performance.now() - started) / 1000;
    expect(seconds).toBeLessThan(3); // about 1 s on a busy 2-core machine
    expectBalanced(result, 20_000);
    expect(result.stats.exactDuplicates).toBe(0);
    expect(result.stats.nearDuplicates).toBeGreaterThan(1_000); // "feature 1234" vs "feature 1238"
  });
});
