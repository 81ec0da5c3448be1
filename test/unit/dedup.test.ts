import { describe, expect, it } from 'vitest';
import { deduplicate, normalizeForMatch, numberTokens, type DedupResult } from '../../activities/data/dedup';
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

  it('normalizeForMatch keeps punctuation between digits, so different numbers stay different', () => {
    expect(['1/2', '1.2', '1-2', "1'2", '1 2'].map((n) => normalizeForMatch(`Fits a ${n} inch pipe.`))).toEqual([
      'fits a 1/2 inch pipe',
      'fits a 1.2 inch pipe',
      'fits a 1-2 inch pipe',
      "fits a 1'2 inch pipe",
      'fits a 1 2 inch pipe',
    ]);
    expect(normalizeForMatch("It's 5. Or 5, or '5'!")).toBe('its 5 or 5 or 5');
  });

  it('numberTokens: every token with a digit, model names with or without hyphens, numbers whole', () => {
    expect(numberTokens('How do I pair model 5 headphones?')).toEqual(['5']);
    expect(numberTokens('Is it 5.3 inches, $1,000 or 10-20% off at 12:30?')).toEqual(['1,000', '10-20', '12:30', '5.3']);
    expect(numberTokens('WH-1000XM4, wh1000xm4 and the X-3')).toEqual(['wh1000xm4', 'x3']);
    expect(numberTokens('Ｘ２００ or x200, 5. $5 5%')).toEqual(['5', 'x200']);
    expect(numberTokens('Does the USB-C port support Wi-Fi? Yes, five devices.')).toEqual([]);
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

describe('near duplicates never differ in a number or a model name', () => {
  // 301 questions about models 100-400 whose answers name 8 different button times: as text, every
  // question is a near duplicate of every other (Jaccard 0.83), and rows with the same time share an
  // answer. Only the wording may make rows near duplicates; these differ in facts.
  const headphones = (): QaRow[] =>
    Array.from({ length: 301 }, (_, i) => {
      const model = 100 + i;
      return row(`How do I pair model ${model} headphones?`, `Hold the button for ${3 + (model % 8)} seconds until the light blinks.`);
    });

  it('keeps all 301 rows when model N and seconds K vary, each in its own group', () => {
    const rows = headphones();
    for (const policy of ['keep-one', 'keep-all']) {
      const result = deduplicate(rows, config({ nearDuplicates: { policy } }));
      expect(result.rows).toHaveLength(301);
      expect(result.removedRows).toEqual([]);
      expect(result.stats).toMatchObject({ nearDuplicates: 0, nearDuplicateGroups: 0 });
      expect(result.rows.map((r) => r.groupId)).toEqual(ids(rows)); // the split may put each anywhere
    }
  });

  it('still removes real paraphrases: the same question and numbers, worded differently', () => {
    const rows = headphones();
    const paraphrases = [120, 121, 250, 400].map((model) =>
      row(`How do I pair my model ${model} headphones?`, `Hold the button for ${3 + (model % 8)} seconds until the light blinks.`),
    );
    const result = deduplicate([...rows, ...paraphrases], config());
    expect(result.rows).toHaveLength(301);
    expect(result.removedRows.map((r) => [r.row.id, r.reason, r.duplicateOf])).toEqual(
      paraphrases.map((p, n) => [p.id, 'near duplicate', rows[[120, 121, 250, 400][n]! - 100]!.id]),
    );
    expect(result.stats).toMatchObject({ nearDuplicates: 4, nearDuplicateGroups: 4 });
  });

  it('another model or a number that differs only in punctuation is not merged; the same model written without a hyphen is', () => {
    const rows = [
      row('Does it fit the WH-1000XM4?', 'Yes.'),
      row('Does it fit the WH-1000XM3?', 'Yes.'),
      row('Does it fit the WH1000XM4 ?', 'Yes.'), // the same model, written without the hyphen
      row('Will it fit a 1/2 inch pipe?', 'Yes, with the adapter.'),
      row('Will it fit a 1.2 inch pipe?', 'Yes, with the adapter.'), // was an exact duplicate: both were "1 2"
    ];
    const result = deduplicate(rows, config({ nearDuplicates: { threshold: 0.7 } }));
    expect(result.removedRows.map((r) => [r.row.id, r.reason, r.duplicateOf])).toEqual([[rows[2]!.id, 'near duplicate', rows[0]!.id]]);
    expect(result.stats.conflictGroups).toBe(0);
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
    const numbers = rows.map((r) => numberTokens(r.question).join(' ')); // "x3" or nothing
    let pairs = 0;
    for (let i = 0; i < rows.length; i++) {
      for (let j = 0; j < i; j++) {
        if (rows[i]!.answer !== rows[j]!.answer || numbers[i] !== numbers[j] || jaccard(shingles[i]!, shingles[j]!) < 0.8) continue;
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
    // Numbers spelled in letters (0 = "a", 27 = "bb"): rows that differ in a number are never near
    // duplicates, so digits would put every row in a bucket of its own and test nothing.
    const spell = (n: number): string => [...n.toString(26)].map((d) => String.fromCharCode(97 + parseInt(d, 26))).join('');
    const rows: QaRow[] = [];
    for (let i = 0; i < 20_000; i++) {
      const product = products[i % products.length]!;
      // Every tenth row answers "Yes." to one of many similar questions: crowded LSH buckets. The
      // others share their answer with a few rows.
      if (i % 10 === 0) rows.push(row(`Does the ${product} support feature ${spell(i)}?`, 'Yes.', { product }));
      else
        rows.push(
          row(`Question ${spell(i)} about the ${product}, part ${spell((i * 7919) % 100_003)}?`, `Answer ${spell(i >> 3)}.`, { product }),
        );
    }
    const started = performance.now();
    const result = deduplicate(rows, config());
    const seconds = (performance.now() - started) / 1000;
    expect(seconds).toBeLessThan(3); // about 1 s on a busy 2-core machine
    expectBalanced(result, 20_000);
    expect(result.stats.exactDuplicates).toBe(0);
    expect(result.stats.nearDuplicates).toBeGreaterThan(1_000); // "feature bcde" vs "feature bcdf"
  });
});
