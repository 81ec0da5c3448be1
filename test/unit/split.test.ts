import { describe, expect, it } from 'vitest';
import { controlledRounding, largestRemainder, splitRows } from '../../activities/data/split';
import { SplitSection } from '../../schemas/config';
import type { GroupedRow, SplitName } from '../../schemas/rows';

const SPLITS: SplitName[] = ['train', 'validation', 'test'];
const config = (overrides: Record<string, unknown> = {}): SplitSection => SplitSection.parse(overrides);

function row(n: number, extra: Partial<GroupedRow> = {}): GroupedRow {
  const id = `r${n}`;
  return {
    id,
    sourceRow: n,
    question: `Question ${n}?`,
    answer: `Answer ${n}.`,
    category: null,
    product: null,
    fact: null,
    groupId: id,
    ...extra,
  };
}
const singletons = (count: number, categoryOf?: (n: number) => string | null): GroupedRow[] =>
  Array.from({ length: count }, (_, n) => row(n + 1, { category: categoryOf ? categoryOf(n) : null }));
/** `count` rows in groups of 1 to 5 rows (group size cycles), ids in input order. */
function grouped(count: number): GroupedRow[] {
  const rows: GroupedRow[] = [];
  for (let n = 1, size = 1; n <= count; size = (size % 5) + 1) {
    const head = `r${n}`;
    for (let k = 0; k < size && n <= count; k++, n++) rows.push(row(n, { groupId: head }));
  }
  return rows;
}
const idsOf = (split: Record<SplitName, GroupedRow[]>): Record<SplitName, string[]> => ({
  train: split.train.map((r) => r.id),
  validation: split.validation.map((r) => r.id),
  test: split.test.map((r) => r.id),
});
function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) | 0;
    const j = (seed >>> 8) % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

describe('rounding helpers', () => {
  it('largestRemainder sums to the total, ties to the earlier split', () => {
    expect(largestRemainder(10, [0.8, 0.1, 0.1])).toEqual([8, 1, 1]);
    expect(largestRemainder(5, [0.8, 0.1, 0.1])).toEqual([4, 1, 0]);
    expect(largestRemainder(3, [0.8, 0.1, 0.1])).toEqual([3, 0, 0]);
    expect(largestRemainder(0, [0.8, 0.1, 0.1])).toEqual([0, 0, 0]);
  });

  it('controlledRounding keeps strata and split totals exact', () => {
    // 30 strata of 5 rows: rounding each alone would give validation 30 rows and test none.
    const sizes = Array.from({ length: 30 }, () => 5);
    const table = controlledRounding(sizes, [0.8, 0.1, 0.1], [120, 15, 15]);
    expect(table.map((r) => r.reduce((a, b) => a + b, 0))).toEqual(sizes);
    expect([0, 1, 2].map((k) => table.reduce((a, r) => a + r[k]!, 0))).toEqual([120, 15, 15]);
    for (const r of table) [0.8, 0.1, 0.1].forEach((ratio, k) => expect(Math.abs(r[k]! - 5 * ratio)).toBeLessThan(1));
  });
});

describe('splitRows', () => {
  it.each([1, 3, 7, 10, 99, 1000, 1001])('with %i singletons each split is within one row of its ratio', (count) => {
    const cfg = config({ train: 0.7, validation: 0.2, test: 0.1 });
    const { splits, stats } = splitRows(singletons(count), cfg);
    for (const name of SPLITS) {
      expect(Math.abs(splits[name].length - cfg[name] * count)).toBeLessThan(1);
      expect(stats.counts[name]).toBe(splits[name].length);
    }
    expect(SPLITS.reduce((a, name) => a + splits[name].length, 0)).toBe(count);
  });

  it('never puts one group in two splits, and stays within the largest group size of each ratio', () => {
    const rows = grouped(2_000);
    const { splits, stats } = splitRows(rows, config());
    const home = new Map<string, SplitName>();
    for (const name of SPLITS) {
      for (const r of splits[name]) {
        expect(home.get(r.groupId) ?? name).toBe(name);
        home.set(r.groupId, name);
      }
      expect(Math.abs(splits[name].length - config()[name] * rows.length)).toBeLessThanOrEqual(5);
      expect(stats.groups[name]).toBe(new Set(splits[name].map((r) => r.groupId)).size);
    }
    // Groups of every size reach validation and test, not only singletons.
    const sizes = (name: SplitName): Set<number> => new Set(splits[name].map((r) => rows.filter((x) => x.groupId === r.groupId).length));
    expect(sizes('test').size).toBeGreaterThan(2);
  });

  it('is deterministic per seed and independent of input order', () => {
    const rows = grouped(500).map((r, i) => ({ ...r, category: ['audio', 'screens', null][i % 3]! }));
    const first = idsOf(splitRows(rows, config({ seed: 7 })).splits);
    expect(idsOf(splitRows(rows, config({ seed: 7 })).splits)).toEqual(first);
    expect(idsOf(splitRows(shuffled(rows, 99), config({ seed: 7 })).splits)).toEqual(first);
    expect(idsOf(splitRows(rows, config({ seed: 8 })).splits)).not.toEqual(first);
    expect(first.train).not.toEqual([...first.train].sort()); // rows are shuffled, not in input order
  });

  it('keeps category shares close when stratifying', () => {
    const categories = ['audio', 'screens', 'computing', 'accessories', 'billing'];
    // Uneven category sizes: 50%, 25%, 12.5%, ...
    const rows = singletons(1_000, (n) => categories[Math.min(4, Math.floor(Math.log2(1_000 / (1_000 - n))))]!);
    const cfg = config({ train: 0.8, validation: 0.1, test: 0.1, seed: 3 });
    const { splits, stats } = splitRows(rows, cfg);
    expect(stats.stratified).toBe(true);
    for (const category of categories) {
      const size = rows.filter((r) => r.category === category).length;
      for (const name of SPLITS) {
        expect(Math.abs(stats.byCategory[category]![name] - cfg[name] * size)).toBeLessThan(1);
        expect(splits[name].filter((r) => r.category === category)).toHaveLength(stats.byCategory[category]![name]);
      }
    }
    for (const name of SPLITS) expect(Math.abs(splits[name].length - cfg[name] * rows.length)).toBeLessThan(1);
  });

  it('stratifies many small categories without starving a split', () => {
    const rows = singletons(150, (n) => `category-${n % 30}`);
    const { stats } = splitRows(rows, config());
    expect(stats.counts).toEqual({ train: 120, validation: 15, test: 15 });
  });

  it('handles rows without a category next to rows with one', () => {
    const rows = singletons(100, (n) => (n % 4 === 0 ? null : 'audio'));
    const { stats } = splitRows(rows, config());
    expect(stats.stratified).toBe(true);
    expect(stats.byCategory['(none)']).toEqual({ train: 20, validation: 3, test: 2 });
    expect(stats.byCategory['audio']).toEqual({ train: 60, validation: 7, test: 8 });
  });

  it('does not stratify without categories or when switched off', () => {
    expect(splitRows(singletons(20), config()).stats).toMatchObject({ stratified: false, byCategory: {} });
    const rows = singletons(20, () => 'audio');
    const { stats } = splitRows(rows, config({ stratify: false }));
    expect(stats.stratified).toBe(false);
    expect(stats.byCategory).toEqual({ audio: { train: 16, validation: 2, test: 2 } });
  });

  it('takes a group’s category from its first row, whatever the input order', () => {
    const rows = [
      row(1, { category: 'audio' }),
      row(2, { groupId: 'r1', category: 'screens' }),
      ...singletons(10).map((r) => ({ ...r, id: `s${r.id}`, groupId: `s${r.id}` })),
    ];
    const a = idsOf(splitRows(rows, config()).splits);
    expect(idsOf(splitRows([...rows].reverse(), config()).splits)).toEqual(a);
  });

  it('copes with tiny and empty inputs and zero ratios', () => {
    const tiny = splitRows(singletons(3), config());
    expect(SPLITS.reduce((a, name) => a + tiny.stats.counts[name], 0)).toBe(3);
    expect(tiny.stats.counts.train).toBe(3);
    expect(splitRows([], config()).stats.counts).toEqual({ train: 0, validation: 0, test: 0 });
    const noTest = splitRows(
      singletons(50, (n) => `c${n % 7}`),
      config({ train: 0.9, validation: 0.1, test: 0 }),
    );
    expect(noTest.stats.counts).toEqual({ train: 45, validation: 5, test: 0 });
  });
});
