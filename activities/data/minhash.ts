/**
 * Near-duplicate search: character shingles, MinHash signatures, LSH buckets and union-find.
 * Linear in rows: each row meets a bounded number of candidates. Hashes are deterministic 32-bit
 * values kept as signed integers (`| 0`) so V8 stays on its small-integer fast paths; MinHash only
 * needs some fixed total order on hash values, and signed order is one.
 */
import type { DedupSection } from '../../schemas/config';

/** murmur3's 32-bit finaliser: a bijection that spreads every input bit over the output. */
export function fmix32(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Seeded 32-bit hash of `text[start, end)` (UTF-16 code units), without building a substring. */
export function hashString(text: string, seed = 0, start = 0, end = text.length): number {
  let h = fmix32(seed ^ 0x9e3779b9);
  for (let i = start; i < end; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 0x5bd1e995);
    h ^= h >>> 15;
  }
  return fmix32(h ^ (end - start));
}

/** Sorted, distinct hashes of the `size`-character shingles; a text shorter than `size` is one shingle. */
export function shingleHashes(text: string, size: number): Int32Array {
  const count = Math.max(1, text.length - size + 1);
  const hashes = new Int32Array(count);
  for (let i = 0; i < count; i++) hashes[i] = hashString(text, size, i, Math.min(text.length, i + size));
  hashes.sort();
  let distinct = 0;
  for (let i = 0; i < count; i++) if (i === 0 || hashes[i] !== hashes[i - 1]) hashes[distinct++] = hashes[i]!;
  return hashes.subarray(0, distinct);
}

/**
 * Exact Jaccard similarity of two sorted, distinct hash sets (as `shingleHashes` returns). Two
 * different shingles of one pair would have to collide in 32 bits to change the result.
 */
export function jaccard(a: Int32Array, b: Int32Array): number {
  if (a.length === 0 && b.length === 0) return 1;
  let i = 0;
  let j = 0;
  let shared = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x === y) shared++;
    if (x <= y) i++;
    if (y <= x) j++;
  }
  return shared / (a.length + b.length - shared);
}

const MINHASH_SEEDS = Int32Array.from({ length: 1024 }, (_, k) => fmix32(Math.imul(k + 1, 0x9e3779b1) ^ 0x7f4a7c15));

/** MinHash signature: for each of `count` seeded permutations (fmix32 of hash ^ seed), the smallest value. */
export function minHashSignature(shingles: Int32Array, count: number): Int32Array {
  const signature = new Int32Array(count).fill(0x7fffffff);
  for (let s = 0; s < shingles.length; s++) {
    const shingle = shingles[s]!;
    for (let k = 0; k < count; k++) {
      const h = fmix32(shingle ^ MINHASH_SEEDS[k]!);
      if (h < signature[k]!) signature[k] = h;
    }
  }
  return signature;
}

/** Union-find whose root is always the smallest index, i.e. the group's first row. */
export class UnionFind {
  private readonly parent: Int32Array;
  private readonly sizes: Int32Array;
  constructor(count: number) {
    this.parent = Int32Array.from({ length: count }, (_, i) => i);
    this.sizes = new Int32Array(count).fill(1);
  }
  find(i: number): number {
    while (this.parent[i] !== i) {
      const grandparent = this.parent[this.parent[i]!]!;
      this.parent[i] = grandparent; // path halving
      i = grandparent;
    }
    return i;
  }
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra === rb) return;
    const [root, child] = ra < rb ? [ra, rb] : [rb, ra];
    this.parent[child] = root;
    this.sizes[root]! += this.sizes[child]!;
  }
  size(i: number): number {
    return this.sizes[this.find(i)]!;
  }
}

// A row entering an LSH bucket is compared with at most MAX_COMPARED of the bucket's earlier rows
// that are not yet in its group, newest first, looking at most MAX_SCANNED rows back. This bounds
// the work per row and band whatever the bucket size (2,000 "Yes." answers to near-identical
// questions stay linear), at the cost of recall: a pair is missed only if, in every band where it
// shares a bucket, 8 dissimilar rows (or 32 rows in all) entered the bucket between the two.
const MAX_COMPARED = 8;
const MAX_SCANNED = 32;
// Rows sharing a match key with at most this many rows are compared pair by pair instead: at most
// 7 exact checks per row, cheaper than a 100-value MinHash signature and with no missed pairs.
const ALL_PAIRS_MAX_ROWS = 8;

/**
 * Joins near-duplicate rows in `groups`: questions whose shingle Jaccard similarity is at least
 * `threshold` and whose match keys are identical (dedup's key: normalised answer, product, and the
 * numbers and model names of question and answer). Rows are first grouped by key; a row alone with
 * its key cannot have a near duplicate, a small group is compared pair by pair, and larger ones get
 * candidates from MinHash LSH with bucket key (band, band values, match key hash), so only rows with
 * the same key meet. Each candidate pair is verified at most once, with the exact Jaccard similarity
 * of the shingle sets.
 */
export function joinNearDuplicates(
  indices: number[],
  questions: string[],
  matchKeys: string[],
  cfg: DedupSection['nearDuplicates'],
  groups: UnionFind,
): void {
  const rows: number[] = [];
  for (const members of groupBy(indices, (i) => matchKeys[i]!).values()) {
    if (members.length > ALL_PAIRS_MAX_ROWS) for (const i of members) rows.push(i);
    else if (members.length > 1) joinAllPairs(members, questions, cfg, groups);
  }
  rows.sort((a, b) => a - b);
  const { bands, rowsPerBand, threshold } = cfg;
  const shingles: Int32Array[] = new Array(rows.length);

  // All buckets in one open-addressing table of typed arrays (no per-bucket objects to collect):
  // slot → newest entry; entry `p * bands + band` → the previous entry of the same bucket.
  const capacity = 2 ** Math.ceil(Math.log2(Math.max(16, (rows.length * bands) / 0.7)));
  const mask = capacity - 1;
  const slotKey = new Int32Array(capacity);
  const slotHead = new Int32Array(capacity).fill(-1);
  const previous = new Int32Array(rows.length * bands);
  const verified: number[] = []; // positions this row was compared with, over all bands

  for (let p = 0; p < rows.length; p++) {
    const i = rows[p]!;
    const own = (shingles[p] = shingleHashes(questions[i]!, cfg.shingleSize));
    const signature = minHashSignature(own, bands * rowsPerBand);
    const keyHash = hashString(matchKeys[i]!, 0x51ed);
    verified.length = 0;
    for (let band = 0; band < bands; band++) {
      let key = fmix32(Math.imul(band + 1, 0x9e3779b1) ^ keyHash);
      for (let k = band * rowsPerBand; k < (band + 1) * rowsPerBand; k++) {
        key = Math.imul(key ^ signature[k]!, 0x5bd1e995);
        key ^= key >>> 15;
      }
      key = fmix32(key);
      let slot = key & mask;
      while (slotHead[slot] !== -1 && slotKey[slot] !== key) slot = (slot + 1) & mask;
      let compared = 0;
      for (
        let e = slotHead[slot]!, scanned = 0;
        e !== -1 && scanned < MAX_SCANNED && compared < MAX_COMPARED;
        e = previous[e]!, scanned++
      ) {
        const q = (e / bands) | 0;
        const j = rows[q]!;
        // Skip pairs verified in an earlier band, rows already in this row's group (so a big group
        // costs one comparison, not eight), and strangers whose 32-bit bucket key collided.
        if (verified.includes(q) || groups.find(j) === groups.find(i) || matchKeys[j] !== matchKeys[i]) continue;
        verified.push(q);
        compared++;
        if (jaccard(own, shingles[q]!) >= threshold - 1e-12) groups.union(i, j);
      }
      const entry = p * bands + band;
      previous[entry] = slotHead[slot]!;
      slotKey[slot] = key;
      slotHead[slot] = entry;
    }
  }
}

function joinAllPairs(members: number[], questions: string[], cfg: DedupSection['nearDuplicates'], groups: UnionFind): void {
  const shingles = members.map((i) => shingleHashes(questions[i]!, cfg.shingleSize));
  for (let p = 1; p < members.length; p++) {
    for (let q = 0; q < p; q++) {
      const [i, j] = [members[p]!, members[q]!];
      if (groups.find(i) !== groups.find(j) && jaccard(shingles[p]!, shingles[q]!) >= cfg.threshold - 1e-12) groups.union(i, j);
    }
  }
}

/** Indices grouped by a key, in first-seen order. */
export function groupBy(indices: Iterable<number>, keyFor: (i: number) => string): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  for (const i of indices) {
    const list = groups.get(keyFor(i));
    if (list) list.push(i);
    else groups.set(keyFor(i), [i]);
  }
  return groups;
}
