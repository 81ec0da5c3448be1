/**
 * The dirt a real support export has, added on purpose so the ingest, clean and dedup stages have
 * something to find: HTML, odd Unicode, near-duplicate rewordings, contradicting answers, pasted
 * manuals and broken fields. Text noise only touches the text around an answer's fact, so the fact
 * is still there after the cleaner strips tags, decodes entities and normalises Unicode.
 */
import type { AnswerParts } from './answers';
import { factsByType, type Product } from './catalog';
import type { Random } from '../lib/seeded-random';

type Edit = (random: Random, text: string) => string | undefined;

function replaceRandomSpace(random: Random, text: string, by: string): string | undefined {
  const spaces = [...text.matchAll(/ /g)].map((m) => m.index);
  if (spaces.length === 0) return undefined;
  const at = random.pick(spaces);
  return text.slice(0, at) + by + text.slice(at + 1);
}

/** Inserts at a word boundary or inside a word, never inside a surrogate pair (texts are BMP here). */
function insertAt(random: Random, text: string, what: string): string {
  const at = random.int(text.length + 1);
  return text.slice(0, at) + what + text.slice(at);
}

const htmlEntityEdits: Edit[] = [
  (_, t) => (t.includes("'") ? t.replace("'", '&#8217;') : undefined),
  (_, t) => (t.includes(' and ') ? t.replace(' and ', ' &amp; ') : undefined),
  (r, t) => replaceRandomSpace(r, t, '&nbsp;'),
  (r, t) => {
    const words = [...t.matchAll(/[A-Za-z]{4,}/g)];
    if (words.length === 0) return undefined;
    const m = r.pick(words);
    return `${t.slice(0, m.index)}&quot;${m[0]}&quot;${t.slice(m.index + m[0].length)}`;
  },
];

/** HTML as pasted from a help-desk editor: paragraphs, line breaks, bold fact, entities. */
export function addHtml(random: Random, question: string, answer: AnswerParts): { question: string; answer: string } {
  let { before, after } = answer;
  let fact = answer.fact;
  let entities = 0;
  for (const edit of random.shuffle([...htmlEntityEdits])) {
    if (entities > 0 && random.chance(0.5)) continue;
    const side = random.chance(0.5) ? 'before' : 'after';
    const edited = edit(random, side === 'before' ? before : after);
    if (edited === undefined) continue;
    if (side === 'before') before = edited;
    else after = edited;
    entities++;
  }
  if (entities === 0) before = replaceRandomSpace(random, before, '&nbsp;') ?? `${before}&nbsp;`;
  if (random.chance(0.5)) fact = random.chance(0.5) ? `<b>${fact}</b>` : `<strong>${fact}</strong>`;
  if (random.chance(0.5)) after = after.replace('. ', random.chance(0.5) ? '.<br/>' : '.<br>\n');
  let html = before + fact + after;
  if (random.chance(0.7) || !html.includes('<')) html = `<p>${html}</p>`;

  let q = question;
  if (random.chance(0.4)) {
    q = random.pick<(t: string) => string>([
      (t) => `<p>${t}</p>`,
      (t) => (t.includes("'") ? t.replaceAll("'", '&#8217;') : `${t}<br>`),
      (t) => replaceRandomSpace(random, t, '&nbsp;') ?? t,
      (t) => `<div>${t.replace(' and ', ' &amp; ')}</div>`,
    ])(q);
  }
  return { question: q, answer: html };
}

const zeroWidth = ['\u200b', '\u200c', '\u200d', '\ufeff'];
const controlChars = ['\u0007', '\u0008', '\u000b', '\u001b'];
const emoji = ['🙏', '😩', '🔋', '🎧', '📺', '😊', '👍', '🤔'];
const toFullWidth = (word: string) => word.replace(/[!-~]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0));

/** Unicode edits a cleaner must undo (NFKC, punctuation mapping, dropping controls, whitespace). */
const unicodeEdits: Record<string, Edit> = {
  curlyQuotes: (r, t) => {
    if (t.includes("'")) return t.replaceAll("'", '\u2019');
    const words = t.split(' ');
    const i = r.int(words.length);
    words[i] = `\u201c${words[i]}\u201d`;
    return words.join(' ');
  },
  nonBreakingSpace: (r, t) => replaceRandomSpace(r, t, r.pick(['\u00a0', '\u202f'])),
  zeroWidth: (r, t) => insertAt(r, t, r.pick(zeroWidth)),
  fullWidth: (r, t) => {
    const words = [...t.matchAll(/[A-Za-z0-9]{3,}/g)];
    if (words.length === 0) return undefined;
    const m = r.pick(words);
    return t.slice(0, m.index) + toFullWidth(m[0]) + t.slice(m.index + m[0].length);
  },
  decomposedAccents: (_, t) => (t.normalize('NFD') !== t ? t.normalize('NFD') : undefined),
  controlChar: (r, t) => insertAt(r, t, r.pick(controlChars)),
  whitespace: (r, t) => replaceRandomSpace(r, t, r.pick(['\t', '   ', '  \n'])) ?? `  ${t}`,
};
// Emoji go last: inserting other characters after them could split a surrogate pair.
const addEmoji: Edit = (r, t) => `${t} ${r.pick(emoji)}`;

function applyUnicodeEdits(random: Random, text: string, count: number): string {
  const names = random.shuffle(Object.keys(unicodeEdits));
  let out = text;
  let applied = 0;
  for (const name of names) {
    if (applied >= count) break;
    const edited = unicodeEdits[name]!(random, out);
    if (edited !== undefined) {
      out = edited;
      applied++;
    }
  }
  return out;
}

/** Curly quotes, odd spaces, zero-width and control characters, full-width letters, NFD, emoji. */
export function addOddUnicode(random: Random, question: string, answer: AnswerParts): { question: string; answer: string } {
  let q = applyUnicodeEdits(random, question, 1 + random.int(2));
  // Few product names have accents, so some questions get an accented phrase to decompose.
  if (q.normalize('NFD') === q && random.chance(0.1)) q = `Naïve question: ${q}`.normalize('NFD');
  if (random.chance(0.25)) q = addEmoji(random, q)!;
  let { before, after } = answer;
  if (random.chance(0.6)) {
    if (random.chance(0.5)) before = applyUnicodeEdits(random, before, 1);
    else after = applyUnicodeEdits(random, after, 1);
  }
  if (random.chance(0.15)) after = addEmoji(random, after)!;
  return { question: q, answer: before + answer.fact + after };
}

/** The set of character 3-grams of lower-cased, whitespace-collapsed text. */
export function shingles(text: string, size = 3): Set<string> {
  const t = text.toLowerCase().replace(/\s+/g, ' ').trim();
  const out = new Set<string>();
  for (let i = 0; i + size <= t.length; i++) out.add(t.slice(i, i + size));
  return out;
}

export function jaccard(a: Set<string>, b: Set<string>): number {
  let shared = 0;
  for (const s of a) if (b.has(s)) shared++;
  return shared / (a.size + b.size - shared || 1);
}

const synonyms: [string, string][] = [
  ['How do I', 'How can I'],
  ['What is', "What's"],
  ['Does the', 'Will the'],
  ['big', 'large'],
  ['the', 'my'],
  ['my', 'the'],
  ['phone', 'smartphone'],
  ['really', 'very'],
  ['fast', 'quickly'],
  ['Which', 'What'],
  ["won't", 'will not'],
  ["isn't", 'is not'],
  ["can't", 'cannot'],
  ['support', 'handle'],
];
const wordEdits: ((t: string) => string)[] = [
  ...synonyms.map(
    ([from, to]) =>
      (t: string) =>
        t.replace(from, to),
  ),
  (t) => `${t.replace(/[?.!]*$/, '')} please${/[?.!]$/.test(t) ? t.slice(-1) : ''}`,
  (t) => `Quick question: ${t}`,
  (t) => (/^(hi|hello|hey|good)\b/i.test(t) ? t : `Hi, ${t[0]!.toLowerCase()}${t.slice(1)}`),
];
const lightEdits: ((t: string) => string)[] = [(t) => t.toLowerCase(), (t) => (t.endsWith('?') ? t.slice(0, -1) : `${t}?`), (t) => `${t}!`];
const comparable = (t: string) =>
  t
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();

/**
 * A light rewording of `question`: one word-level change (synonym, "please", a greeting), maybe a
 * casing or punctuation change on top. Always a near duplicate (3-gram Jaccard at least 0.8) and
 * never an exact one, even after lower-casing and dropping punctuation; undefined if no edit fits.
 */
export function nearDuplicateQuestion(random: Random, question: string): string | undefined {
  const original = shingles(question);
  for (const edit of random.shuffle([...wordEdits])) {
    let variant = edit(question);
    if (random.chance(0.4)) variant = random.pick(lightEdits)(variant);
    if (comparable(variant) === comparable(question)) continue;
    if (jaccard(original, shingles(variant)) >= 0.8) return variant;
  }
  return undefined;
}

const ipRatings = ['IPX4', 'IPX5', 'IP54', 'IP67', 'IP68'];

/** A plausible but different value for a fact, e.g. '40 hours' to '60 hours'; undefined if it has no number. */
export function contradictFact(random: Random, fact: string): string | undefined {
  if (/^IP[X\d]\d$/.test(fact)) return random.pick(ipRatings.filter((r) => r !== fact));
  const m = /(\d+)(\.\d+)?/.exec(fact);
  if (!m) return undefined;
  const n = Number(m[0]);
  const decimals = m[2] ? m[2].length - 1 : 0;
  const nearby = decimals > 0 || n < 10 ? [n - 1, n + 1] : [Math.round(n / 2), Math.round(n * 1.5), n * 2];
  // Skip values the fact already names ('1 TB or 2 TB' must not become '2 TB or 2 TB').
  const named = new Set(fact.match(/\d+(\.\d+)?/g));
  const others = nearby
    .filter((x) => x > 0)
    .map((x) => x.toFixed(decimals))
    .filter((x) => !named.has(x));
  if (others.length === 0) return undefined;
  return fact.slice(0, m.index) + random.pick(others) + fact.slice(m.index + m[0].length);
}

const safetyNotes =
  'Safety: do not expose the device to temperatures above 45 degrees Celsius or below 0 degrees Celsius. ' +
  'Use only the supplied cable or a certified charger. Do not open the housing; there are no user-serviceable parts inside. ' +
  'Keep small parts away from children. Dispose of the battery according to local regulations. ';

/** A whole manual pasted as an answer: far past the 4,000-character answer limit. */
export function pastedManual(random: Random, product: Product): string {
  const facts = Object.values(factsByType(product)).flat();
  const label = (topic: string) => topic.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`);
  const target = 4_200 + random.int(4_000);
  let manual = `Please see the full manual below.\n\n${product.name.toUpperCase()} USER MANUAL\n`;
  for (let chapter = 1; manual.length < target; chapter++) {
    manual += `\n${chapter}. ${product.name} reference\n`;
    facts.forEach((f, i) => {
      manual += `${chapter}.${i + 1} ${label(f.topic)}: ${f.steps ?? f.fact}.\n`;
    });
    manual += `${safetyNotes}Warranty: ${product.warranty.months} months covering ${product.warranty.covers}.\n`;
  }
  return manual;
}

/** Breaks a row the way bad exports do; returns the same object, edited. */
export function breakRow(random: Random, kind: 'emptyAnswer' | 'missingField' | 'wrongType', row: Record<string, unknown>) {
  if (kind === 'emptyAnswer') row.answer = random.pick(['', ' ', '   ', '\n', '\t \n']);
  else if (kind === 'missingField') delete row[random.chance(0.5) ? 'question' : 'answer'];
  else {
    const question = row.question;
    const fixes: (() => void)[] = [
      () => (row.answer = Number(/\d+/.exec(String(row.fact))?.[0] ?? random.int(100))),
      () => (row.question = [question]),
      () => (row.question = { text: question }),
      () => (row.question = null),
      () => (row.answer = null),
    ];
    random.pick(fixes)();
  }
  return row;
}
