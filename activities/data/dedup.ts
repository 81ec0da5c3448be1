/**
 * Deduplication: exact duplicates, conflicting answers and near-duplicate questions. Pure: rows in,
 * rows out, plus the reports a person needs to check what was removed and why.
 *
 * Steps, each over the rows the previous one kept:
 *   1. conflicts: the same normalised question (and product) with different answers, counted over
 *      all rows so `majority` sees how often each answer was given;
 *   2. exact duplicates: the same normalised question, answer and product as an earlier row;
 *   3. near duplicates: similar questions with the same answer and the same numbers and model names
 *      (`numberTokens`) in question and answer, found with MinHash LSH.
 * Every output row carries a `groupId` (the id of its group's first row) so the split can keep
 * paraphrases and conflicting answers of one question in the same split.
 */
import type { DedupSection } from '../../schemas/config';
import type { GroupedRow, QaRow } from '../../schemas/rows';
import { UnionFind, groupBy, joinNearDuplicates } from './minhash';

export interface DedupStats {
  rowsIn: number;
  rowsOut: number;
  exactDuplicates: number;
  /** Rows that are a near duplicate of an earlier row (removed under `keep-one`, grouped under `keep-all`). */
  nearDuplicates: number;
  nearDuplicateGroups: number;
  conflictGroups: number;
  conflictRowsRemoved: number;
}

export interface ConflictReport {
  key: string;
  question: string;
  product: string | null;
  answers: Array<{ answer: string; count: number; rowIds: string[] }>;
  resolution: string;
}

export interface DedupResult {
  rows: GroupedRow[];
  stats: DedupStats;
  conflicts: ConflictReport[];
  removedRows: Array<{ row: QaRow; reason: string; duplicateOf?: string }>;
}

/**
 * The text two rows are compared by: NFKC-folded, lower-cased, apostrophes dropped (`don't` =
 * `dont`), other punctuation a space, spaces collapsed. Punctuation between two digits stays, so
 * `1/2`, `1.2` and `5'3` remain different numbers instead of all becoming `1 2` or `53`.
 */
export function normalizeForMatch(text: string): string {
  return text
    .normalize('NFKC')
    .toLowerCase()
    .replace(/(?<!\p{N})['\u2018\u2019\u02BC]|['\u2018\u2019\u02BC](?!\p{N})/gu, '')
    .replace(/(?:(?<!\p{N})[\p{P}\s]|[\p{P}\s](?!\p{N}))+/gu, ' ')
    .trim();
}

// Model names are written with and without a hyphen (WH-1000XM4, WH1000XM4; X-3, X3), so a hyphen or
// underscore between a letter and a digit, or two letters, is dropped; between two digits it is a
// range (10-20) and stays.
const WORD_JOINER = /(?<=[\p{L}\p{N}])[-_\u2010\u2011](?=[\p{L}\p{N}])/gu;
const DIGIT = /\p{N}/u;
// Any other character that is not a letter or digit ends a token, unless it stands between two
// digits: 5.3, 1,000, 1/2, 12:30 and 10-20 are each one token.
const TOKEN_BREAK = /(?<!\p{N})[^\p{L}\p{N}]|[^\p{L}\p{N}](?!\p{N})/gu;

/**
 * The numbers and model-like tokens of a text, sorted and distinct: after NFKC folding and
 * lower-casing, every token (see WORD_JOINER and TOKEN_BREAK) that contains a digit. `$5`, `5%` and
 * `5.` give `5`; `5.3`, `X200` and `wh1000xm4` stay whole. Rows whose questions or answers differ in
 * these are never near duplicates: "model 3" and "model 4" are different facts however similar the
 * rest of the text. Spelled-out numbers ("five") are words, not tokens.
 */
export function numberTokens(text: string): string[] {
  const tokens = text
    .normalize('NFKC')
    .toLowerCase()
    .replace(WORD_JOINER, (_joiner, at: number, all: string) => (DIGIT.test(all[at - 1]!) && DIGIT.test(all[at + 1]!) ? '-' : ''))
    .replace(TOKEN_BREAK, ' ')
    .split(/\s+/)
    .filter((token) => DIGIT.test(token));
  return [...new Set(tokens)].sort();
}

// Normalised text keeps punctuation only between two digits, so ` :: ` cannot occur inside a part.
const keyOf = (product: string, text: string): string => (product === '' ? text : `${product} :: ${text}`);

function quote(text: string, max = 60): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max - 1)}…` : text);
}

export function deduplicate(rows: QaRow[], cfg: DedupSection): DedupResult {
  const n = rows.length;
  const products = new Map<string, string>(); // few distinct products: normalise each once
  const product = rows.map((row) => {
    if (row.product === null) return '';
    let normalized = products.get(row.product);
    if (normalized === undefined) products.set(row.product, (normalized = normalizeForMatch(row.product)));
    return normalized;
  });
  const question = rows.map((row) => normalizeForMatch(row.question));
  const questionKey = rows.map((_, i) => keyOf(product[i]!, question[i]!));
  const answerKey = rows.map((row, i) => keyOf(product[i]!, normalizeForMatch(row.answer)));
  const removal: Array<{ reason: string; duplicateOf?: number } | undefined> = new Array(n);
  // Pairs of rows that must land in the same split; joined once every removal is known.
  const together: Array<[number, number]> = [];

  // 1. Conflicts, over all rows.
  const conflicts: ConflictReport[] = [];
  let conflictRowsRemoved = 0;
  for (const [key, members] of groupBy(rows.keys(), (i) => questionKey[i]!)) {
    const byAnswer = groupBy(members, (i) => answerKey[i]!); // insertion order = first seen
    if (byAnswer.size < 2) continue;
    const answers = [...byAnswer.values()];
    let kept: number[][];
    let resolution: string;
    if (cfg.conflicts === 'keep-all') {
      kept = answers;
      resolution = `keep-all: kept all ${members.length} rows in one group`;
    } else if (cfg.conflicts === 'drop') {
      kept = [];
      resolution = `drop: removed all ${members.length} rows`;
    } else {
      // `reduce` keeps the earlier answer on a tie, so ties go to the answer seen first.
      const chosen = cfg.conflicts === 'keep-first' ? answers[0]! : answers.reduce((best, a) => (a.length > best.length ? a : best));
      kept = [chosen];
      resolution = `${cfg.conflicts}: kept ${quote(rows[chosen[0]!]!.answer)} (${chosen.length} of ${members.length} rows)`;
    }
    const keptRows = kept.flat();
    for (const i of keptRows) together.push([keptRows[0]!, i]);
    const keptSet = new Set(keptRows);
    for (const i of members) {
      if (keptSet.has(i)) continue;
      removal[i] = { reason: `conflicting answer to the same question (conflicts: ${cfg.conflicts})` };
      conflictRowsRemoved++;
    }
    const first = rows[members[0]!]!;
    conflicts.push({
      key,
      question: first.question,
      product: first.product,
      answers: answers.map((list) => ({
        answer: rows[list[0]!]!.answer,
        count: list.length,
        rowIds: list.map((i) => rows[i]!.id),
      })),
      resolution,
    });
  }

  // 2. Exact duplicates among the rows the conflict policy kept. With `exact` off they stay, but
  // grouped: identical rows in train and test would leak the answer.
  let exactDuplicates = 0;
  const firstWithPair = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    if (removal[i]) continue;
    const pairKey = `${questionKey[i]}\u0000${answerKey[i]}`;
    const first = firstWithPair.get(pairKey);
    if (first === undefined) firstWithPair.set(pairKey, i);
    else if (cfg.exact) {
      removal[i] = { reason: 'exact duplicate', duplicateOf: first };
      exactDuplicates++;
    } else together.push([first, i]);
  }

  // 3. Near duplicates among the remaining rows.
  let nearDuplicates = 0;
  let nearDuplicateGroups = 0;
  if (cfg.nearDuplicates.enabled) {
    const remaining = [...rows.keys()].filter((i) => !removal[i]);
    const near = new UnionFind(n);
    // A question of only punctuation normalises to ''; its key still tells such questions apart.
    const questions = question.map((text, i) => text || questionKey[i]!);
    // Near duplicates must agree on the numbers and model names of question and answer as well as
    // on the answer: only the wording may differ (the same answer to "model 3" and "model 4" is two
    // facts, not one). A row whose answer no other row gives needs no tokens: it has no candidates.
    const answerShared = new Map<string, boolean>();
    for (const i of remaining) answerShared.set(answerKey[i]!, answerShared.has(answerKey[i]!));
    const nearDuplicateKey = rows.map((row, i) =>
      answerShared.get(answerKey[i]!)
        ? `${answerKey[i]}\u0000${numberTokens(row.question).join(' ')}\u0000${numberTokens(row.answer).join(' ')}`
        : answerKey[i]!,
    );
    joinNearDuplicates(remaining, questions, nearDuplicateKey, cfg.nearDuplicates, near);
    for (const i of remaining) {
      const root = near.find(i);
      if (root === i) {
        if (near.size(i) > 1) nearDuplicateGroups++;
      } else {
        nearDuplicates++;
        if (cfg.nearDuplicates.policy === 'keep-one') removal[i] = { reason: 'near duplicate', duplicateOf: root };
        else together.push([root, i]);
      }
    }
  }

  // A removed duplicate stands for the kept row it duplicates, so a conflict partner of a removed
  // paraphrase still joins the paraphrase's group. duplicateOf always points to an earlier row.
  const keptRowFor = new Int32Array(n).fill(-1);
  for (let i = 0; i < n; i++) {
    const r = removal[i];
    keptRowFor[i] = r === undefined ? i : r.duplicateOf === undefined ? -1 : keptRowFor[r.duplicateOf]!;
  }
  const groups = new UnionFind(n);
  for (const [a, b] of together) {
    if (keptRowFor[a]! >= 0 && keptRowFor[b]! >= 0) groups.union(keptRowFor[a]!, keptRowFor[b]!);
  }

  // Output in input order. Only kept rows were joined, so every group root is a kept row.
  const kept: GroupedRow[] = [];
  const removedRows: DedupResult['removedRows'] = [];
  for (let i = 0; i < n; i++) {
    const row = rows[i]!;
    const r = removal[i];
    if (r === undefined) kept.push({ ...row, groupId: rows[groups.find(i)]!.id });
    else if (r.duplicateOf === undefined) removedRows.push({ row, reason: r.reason });
    else removedRows.push({ row, reason: r.reason, duplicateOf: rows[r.duplicateOf]!.id });
  }
  return {
    rows: kept,
    stats: {
      rowsIn: n,
      rowsOut: kept.length,
      exactDuplicates,
      nearDuplicates,
      nearDuplicateGroups,
      conflictGroups: conflicts.length,
      conflictRowsRemoved,
    },
    conflicts,
    removedRows,
  };
}
