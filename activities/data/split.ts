/**
 * Seeded, group-aware, stratified train/validation/test split. Pure: rows in, three row lists out.
 *
 * Units are groups (`groupId` from dedup), so paraphrases and conflicting answers of one question
 * never straddle splits. The result depends only on the rows and the seed, not on input order:
 * groups and rows are ordered by a seeded hash of their id, never by Math.random.
 *
 * Row counts: the global target of each split is `ratio × n` rounded by largest remainder. With
 * stratification the per-category targets are rounded jointly (a small max-flow), so that every
 * category gets within one row of its share in each split AND the totals still hit the global
 * targets; rounding each category on its own would, with 30 categories of 5 rows, give validation
 * 30 rows and test none. Groups of several rows can miss a target by up to the group's size.
 */
import type { SplitSection } from '../../schemas/config';
import type { GroupedRow, SplitName } from '../../schemas/rows';
import { hashString } from './minhash';

export interface SplitStats {
  counts: Record<SplitName, number>;
  groups: Record<SplitName, number>;
  /** Category (`(none)` for rows without one) → rows per split; empty when no row has a category. */
  byCategory: Record<string, Record<SplitName, number>>;
  stratified: boolean;
}

const SPLITS: SplitName[] = ['train', 'validation', 'test'];
const NO_CATEGORY = '(none)';
const EPSILON = 1e-9;
const zeros = (): Record<SplitName, number> => ({ train: 0, validation: 0, test: 0 });

type Group = { id: string; rows: GroupedRow[] };

/** Largest-remainder rounding of `total × ratio`; ties go to the earlier split. */
export function largestRemainder(total: number, ratios: number[]): number[] {
  const sum = ratios.reduce((a, b) => a + b, 0) || 1;
  const quotas = ratios.map((r) => (total * r) / sum);
  const counts = quotas.map((q) => Math.floor(q + EPSILON));
  const byRemainder = ratios.map((_, k) => k).sort((a, b) => quotas[b]! - counts[b]! - (quotas[a]! - counts[a]!) || a - b);
  for (let left = total - counts.reduce((a, b) => a + b, 0), i = 0; left > 0; left--, i++) counts[byRemainder[i]!]! += 1;
  return counts;
}

/**
 * Integer row targets per stratum and split: each within one of `ratio × stratumSize`, each
 * stratum's targets summing to its size, each split's summing to `totals`. Floors first, then the
 * leftover rows are routed stratum → split through cells with a fractional part by augmenting paths
 * (such a rounding always exists, Bacharach 1966); larger fractions are tried first.
 */
export function controlledRounding(sizes: number[], ratios: number[], totals: number[]): number[][] {
  const sum = ratios.reduce((a, b) => a + b, 0) || 1;
  const quotas = sizes.map((size) => ratios.map((r) => (size * r) / sum));
  const table = quotas.map((row) => row.map((q) => Math.floor(q + EPSILON)));
  const rowNeed = sizes.map((size, c) => size - table[c]!.reduce((a, b) => a + b, 0));
  const colNeed = totals.map((total, k) => total - table.reduce((a, row) => a + row[k]!, 0));
  const up = quotas.map(() => ratios.map(() => false)); // cell rounded up
  const canRoundUp = (c: number, k: number): boolean => quotas[c]![k]! - table[c]![k]! > EPSILON;
  const cells = quotas
    .flatMap((row, c) => row.map((q, k) => ({ c, k, fraction: q - table[c]![k]! })))
    .filter(({ fraction }) => fraction > EPSILON)
    .sort((a, b) => b.fraction - a.fraction || a.c - b.c || a.k - b.k);
  for (const { c, k } of cells) {
    if (rowNeed[c]! > 0 && colNeed[k]! > 0) {
      up[c]![k] = true;
      rowNeed[c]!--;
      colNeed[k]!--;
    }
  }
  // Augment: stratum c → split k (free cell) ← stratum c2 (rounded up) → split k2 … → split with need.
  for (let c = 0; c < sizes.length; c++) {
    while (rowNeed[c]! > 0) {
      const path = augmentingPath(c, up, canRoundUp, colNeed);
      if (path === null) break;
      for (const [cell, k, flip] of path) up[cell]![k] = flip;
      rowNeed[c]!--;
      colNeed[path[path.length - 1]![1]]!--;
    }
  }
  // Only reachable if the theorem's premise fails (it does not for largest-remainder totals);
  // kept so a bug costs a row of accuracy, not rows.
  for (let c = 0; c < sizes.length; c++) {
    for (; rowNeed[c]! > 0; rowNeed[c]!--) {
      const k = colNeed.indexOf(Math.max(...colNeed));
      table[c]![k]! += 1;
      colNeed[k]!--;
    }
  }
  return table.map((row, c) => row.map((count, k) => count + (up[c]![k] ? 1 : 0)));
}

/** Breadth-first search over strata; returns the cells to flip: [stratum, split, newValue]. */
function augmentingPath(
  start: number,
  up: boolean[][],
  canRoundUp: (c: number, k: number) => boolean,
  colNeed: number[],
): Array<[number, number, boolean]> | null {
  const cameFrom = new Map<number, { viaSplit: number; from: number }>([[start, { viaSplit: -1, from: -1 }]]);
  const queue = [start];
  for (let q = 0; q < queue.length; q++) {
    const c = queue[q]!;
    for (let k = 0; k < colNeed.length; k++) {
      if (up[c]![k] || !canRoundUp(c, k)) continue;
      const path: Array<[number, number, boolean]> = [[c, k, true]];
      if (colNeed[k]! > 0) {
        for (let at = c; at !== start;) {
          const step = cameFrom.get(at)!;
          path.unshift([at, step.viaSplit, false], [step.from, step.viaSplit, true]);
          at = step.from;
        }
        return path;
      }
      // Split k is full: move one of its rounded-up cells to another stratum's split instead.
      for (let c2 = 0; c2 < up.length; c2++) {
        if (up[c2]![k] && !cameFrom.has(c2)) {
          cameFrom.set(c2, { viaSplit: k, from: c });
          queue.push(c2);
        }
      }
    }
  }
  return null;
}

/** Assigns groups (in seeded order) to splits so each split's rows approach `targets`. */
function assignGroups(groups: Group[], targets: number[], into: Group[][]): void {
  const assigned = targets.map(() => 0);
  // Multi-row groups first, so the singletons can fill every split to its target exactly.
  const ordered = [...groups.filter((g) => g.rows.length > 1), ...groups.filter((g) => g.rows.length === 1)];
  for (const group of ordered) {
    const size = group.rows.length;
    const deficit = targets.map((t, k) => t - assigned[k]!);
    const fits = deficit.map((d) => d >= size);
    // Among splits the group fits into, the one furthest (relatively) from its target, so groups
    // are spread in proportion; when none fits, the one with the most room.
    let best = -1;
    for (let k = 0; k < targets.length; k++) {
      if (best < 0) best = k;
      else if (fits[k] !== fits[best]) best = fits[k] ? k : best;
      else if (fits[k] ? deficit[k]! / targets[k]! > deficit[best]! / targets[best]! : deficit[k]! > deficit[best]!) best = k;
    }
    assigned[best]! += size;
    into[best]!.push(group);
  }
}

export function splitRows(rows: GroupedRow[], cfg: SplitSection): { splits: Record<SplitName, GroupedRow[]>; stats: SplitStats } {
  const ratios = SPLITS.map((name) => cfg[name]);
  // Seeded order: by a hash of the id, ties by id. Hashes are computed once per item, not per comparison.
  const seededOrder = <T>(items: T[], idOf: (item: T) => string): T[] =>
    items
      .map((item) => ({ item, id: idOf(item), hash: hashString(idOf(item), cfg.seed) }))
      .sort((a, b) => a.hash - b.hash || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map(({ item }) => item);

  const groupMap = new Map<string, Group>();
  for (const row of rows) {
    const group = groupMap.get(row.groupId);
    if (group) group.rows.push(row);
    else groupMap.set(row.groupId, { id: row.groupId, rows: [row] });
  }
  // A group's category is that of its first row (the one whose id is the groupId), whatever the input order.
  const categoryOf = (g: Group): string => (g.rows.find((r) => r.id === g.id) ?? g.rows[0]!).category ?? NO_CATEGORY;
  const hasCategory = rows.some((row) => row.category !== null);
  const stratified = cfg.stratify && hasCategory;

  const strata = new Map<string, Group[]>();
  for (const group of seededOrder([...groupMap.values()], (g) => g.id)) {
    const key = stratified ? categoryOf(group) : '';
    const stratum = strata.get(key);
    if (stratum) stratum.push(group);
    else strata.set(key, [group]);
  }
  const strataKeys = [...strata.keys()].sort();
  const strataSizes = strataKeys.map((key) => strata.get(key)!.reduce((a, g) => a + g.rows.length, 0));
  const totals = largestRemainder(rows.length, ratios);
  const targets = controlledRounding(strataSizes, ratios, totals);

  // Strata in name order; what a stratum of multi-row groups over- or under-fills is carried to the next.
  const chosen: Group[][] = SPLITS.map(() => []);
  const carry = SPLITS.map(() => 0);
  strataKeys.forEach((key, c) => {
    const into: Group[][] = SPLITS.map(() => []);
    const stratumTargets = targets[c]!.map((t, k) => Math.max(0, t + carry[k]!));
    assignGroups(strata.get(key)!, stratumTargets, into);
    into.forEach((groups, k) => {
      for (const group of groups) chosen[k]!.push(group); // no spread: a call takes ~100k arguments at most
      carry[k]! += targets[c]![k]! - groups.reduce((a, g) => a + g.rows.length, 0);
    });
  });

  const splits = {} as Record<SplitName, GroupedRow[]>;
  const stats: SplitStats = { counts: zeros(), groups: zeros(), byCategory: {}, stratified };
  SPLITS.forEach((name, k) => {
    splits[name] = seededOrder(
      chosen[k]!.flatMap((g) => g.rows),
      (row) => row.id,
    );
    stats.counts[name] = splits[name].length;
    stats.groups[name] = chosen[k]!.length;
    for (const row of hasCategory ? splits[name] : []) {
      const category = row.category ?? NO_CATEGORY;
      (stats.byCategory[category] ??= zeros())[name] += 1;
    }
  });
  return { splits, stats };
}
