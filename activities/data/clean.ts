/**
 * Text cleaning: pure functions from rows to rows, one switchable rule per `clean` config option.
 *
 * Rules run in a fixed order chosen so that no rule undoes another:
 *   stripHtml → decodeEntities → normalizeUnicode → dropControlChars → normalizePunctuation
 *   → removeUrls → collapseWhitespace
 * Real tags are stripped before entities are decoded, so encoded text such as `&lt;b&gt;` stays
 * the literal `<b>` instead of becoming a tag that is then removed. Decoding comes before Unicode
 * normalisation so that `&#xFF35;` is folded like a typed `Ｕ`.
 *
 * Then rows are removed, each for the first reason that applies: empty after cleaning, shorter than
 * `minAnswerChars`, matching `dropAnswersMatching`, or a low-information answer (the one rule that
 * looks across rows). Answers are compared with dedup's `normalizeForMatch`, so what counts as the
 * same answer here is what counts as the same answer there.
 */
import { DecodingMode, decodeHTML } from 'entities';
import type { CleanSection } from '../../schemas/config';
import type { QaRow } from '../../schemas/rows';
import { normalizeForMatch } from './dedup';

type RuleName =
  'stripHtml' | 'decodeEntities' | 'normalizeUnicode' | 'dropControlChars' | 'normalizePunctuation' | 'removeUrls' | 'collapseWhitespace';
type Rule = { name: RuleName; apply: (text: string) => string };

// Contents of these elements are never text a customer wrote.
const SCRIPT_OR_STYLE = /<(script|style)\b[^>]*>[\s\S]*?<\/\1\s*>/gi;
const HTML_COMMENT = /<!--[\s\S]*?-->|<![A-Za-z][^>]*>/g;
// Tags whose boundary separates words; every other tag (b, i, span, a, ...) is removed silently.
const BLOCK_TAG =
  /<\/?(?:p|br|div|li|ul|ol|tr|td|th|table|thead|tbody|h[1-6]|blockquote|pre|hr|section|article|header|footer|dl|dt|dd|img)\b[^<>]*>/gi;
// A tag name must follow `<` directly, so `5 < 6` or `<3` in prose are not mistaken for tags.
const ANY_TAG = /<\/?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?\/?>/g;

export function stripHtml(text: string): string {
  return text.replace(SCRIPT_OR_STYLE, ' ').replace(HTML_COMMENT, ' ').replace(BLOCK_TAG, ' ').replace(ANY_TAG, '');
}

/**
 * Decodes each HTML character reference once (`&amp;lt;` becomes the text `&lt;`) with the full
 * HTML5 named-entity table (`&rarr;`, `&hearts;`, ...); names are case-sensitive as in HTML
 * (`&Eacute;` is not `&eacute;`), numeric references 128-159 mean their Windows-1252 characters
 * (`&#146;` is an apostrophe), and unknown names stay as written. The legacy names that browsers
 * accept without a semicolon (`&amp`, `&copy`) are decoded too, except before `=` or a letter or
 * digit, where browsers leave them in attribute values: `?id=5&reg=us` in a pasted URL survives.
 */
export function decodeEntities(text: string): string {
  return decodeHTML(text, DecodingMode.Attribute);
}

// C0/C1 controls other than layout whitespace, zero-width characters, the byte-order mark, word
// joiner, soft hyphen, bidi marks and private-use characters: invisible, and they split tokens.
const INVISIBLE = /[\p{Cc}\u00AD\u200B\u200C\u200E\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF\p{Co}]/gu;
// A zero-width joiner is dropped too, except inside emoji sequences such as 👩‍💻, where it is part of the emoji.
const STRAY_ZWJ = /(?<![\p{Extended_Pictographic}\p{Emoji_Modifier}\uFE0F])\u200D|\u200D(?!\p{Extended_Pictographic})/gu;

export function dropControlChars(text: string): string {
  return text
    .replace(/[\t\n\v\f\r\u0085]/g, ' ')
    .replace(INVISIBLE, '')
    .replace(STRAY_ZWJ, '');
}

const PUNCTUATION: Array<[RegExp, string]> = [
  [/[\u2018\u2019\u201A\u201B\u2032\u00B4]/g, "'"],
  [/[\u201C\u201D\u201E\u201F\u2033\u00AB\u00BB]/g, '"'],
  [/[\u2010-\u2015\u2212]/g, '-'],
  [/\u2026/g, '...'],
  [/[\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]/g, ' '],
];

export function normalizePunctuation(text: string): string {
  return PUNCTUATION.reduce((out, [pattern, ascii]) => out.replace(pattern, ascii), text);
}

// Trailing sentence punctuation is left in place: "see https://x.io/help." keeps its full stop.
const URL_PATTERN = /\b(?:https?:\/\/|www\.)[^\s<>"']*[^\s<>"'.,;:!?)\]}]/gi;

export function removeUrls(text: string): string {
  return text.replace(URL_PATTERN, '');
}

// Every Unicode space, but not U+FEFF, which JavaScript's `\s` also matches: that one is
// dropControlChars' business, so turning that rule off keeps it.
const WHITESPACE_RUN = /[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+/g;

export function collapseWhitespace(text: string): string {
  return text.replace(WHITESPACE_RUN, ' ').trim();
}

function enabledRules(rules: CleanSection): Rule[] {
  const form = rules.normalizeUnicode;
  const all: Array<Rule | false> = [
    rules.stripHtml && { name: 'stripHtml', apply: stripHtml },
    rules.decodeEntities && { name: 'decodeEntities', apply: decodeEntities },
    form !== 'none' && { name: 'normalizeUnicode', apply: (t: string) => t.normalize(form) },
    rules.dropControlChars && { name: 'dropControlChars', apply: dropControlChars },
    rules.normalizePunctuation && { name: 'normalizePunctuation', apply: normalizePunctuation },
    rules.removeUrls && { name: 'removeUrls', apply: removeUrls },
    rules.collapseWhitespace && { name: 'collapseWhitespace', apply: collapseWhitespace },
  ];
  return all.filter((rule): rule is Rule => rule !== false);
}

export function cleanText(text: string, rules: CleanSection): string {
  return enabledRules(rules).reduce((out, rule) => rule.apply(out), text);
}

export interface CleanStats {
  rowsIn: number;
  rowsOut: number;
  /** Rule name → rows in which that rule changed the question, answer or fact. */
  changedByRule: Record<string, number>;
  /** Removal reason → rows removed for it. */
  removed: Record<string, number>;
}

/** Compiles `dropAnswersMatching` anchored to the whole answer; a bad pattern is named in the error. */
function compileDropPatterns(patterns: string[]): Array<{ pattern: string; regex: RegExp }> {
  return patterns.map((pattern) => {
    try {
      return { pattern, regex: new RegExp(`^(?:${pattern})$`, 'i') };
    } catch (error) {
      throw new Error(`clean.dropAnswersMatching: "${pattern}" is not a valid regular expression (${(error as Error).message})`);
    }
  });
}

/**
 * The normalised answers that say nothing (`clean.lowInformation`): at most `maxWords` words, and the
 * answer to at least `minQuestions` different questions, both compared as `normalizeForMatch` text
 * (lower-cased, punctuation stripped, whitespace collapsed), so "I don't know.", "i dont know" and
 * "I DON'T KNOW!" are one answer and a question asked twice counts once. A short answer to a few
 * questions ("Black" for three colour questions) is a fact; a long answer repeated often (a seller's
 * template) still says something. Counted over every row, so the rows another rule removes still
 * show that an answer is common.
 */
export function lowInformationAnswers(
  rows: Array<{ question: string; answer: string }>,
  rule: CleanSection['lowInformation'],
): Set<string> {
  const questionsByAnswer = new Map<string, Set<string>>();
  for (const { question, answer } of rows) {
    const key = normalizeForMatch(answer);
    if (key === '' || key.split(' ').length > rule.maxWords) continue;
    let questions = questionsByAnswer.get(key);
    if (questions === undefined) questionsByAnswer.set(key, (questions = new Set()));
    if (questions.size < rule.minQuestions) questions.add(normalizeForMatch(question)); // enough is enough
  }
  return new Set([...questionsByAnswer].filter(([, questions]) => questions.size >= rule.minQuestions).map(([answer]) => answer));
}

export function cleanRows(
  rows: QaRow[],
  rules: CleanSection,
): { rows: QaRow[]; stats: CleanStats; removedRows: Array<{ row: QaRow; reason: string }> } {
  const ruleList = enabledRules(rules);
  const dropPatterns = compileDropPatterns(rules.dropAnswersMatching);
  const changedByRule: Record<string, number> = Object.fromEntries(ruleList.map((rule) => [rule.name, 0]));
  const cleaned = rows.map((row): QaRow => {
    const changed = new Set<RuleName>();
    const clean = (text: string): string =>
      ruleList.reduce((out, rule) => {
        const next = rule.apply(out);
        if (next !== out) changed.add(rule.name);
        return next;
      }, text);
    const question = clean(row.question);
    const answer = clean(row.answer);
    const fact = row.fact === null ? null : clean(row.fact);
    for (const name of changed) changedByRule[name] = (changedByRule[name] ?? 0) + 1;
    return { ...row, question, answer, fact: fact === null || fact.trim() === '' ? null : fact };
  });
  const lowInformation = rules.lowInformation.enabled ? lowInformationAnswers(cleaned, rules.lowInformation) : new Set<string>();

  const removed: Record<string, number> = {};
  const kept: QaRow[] = [];
  const removedRows: Array<{ row: QaRow; reason: string }> = [];
  cleaned.forEach((row, i) => {
    // The first reason that applies; the order only decides which one a row is counted under.
    const trimmedAnswer = row.answer.trim();
    let reason: string | null = null;
    if (row.question.trim() === '' || trimmedAnswer === '') reason = 'empty after cleaning';
    else if ([...trimmedAnswer].length < rules.minAnswerChars) reason = `answer shorter than minAnswerChars (${rules.minAnswerChars})`;
    else {
      const match = dropPatterns.find(({ regex }) => regex.test(trimmedAnswer));
      if (match) reason = `answer matches dropAnswersMatching "${match.pattern}"`;
      else if (lowInformation.size > 0 && lowInformation.has(normalizeForMatch(row.answer))) reason = 'low-information';
    }
    if (reason === null) kept.push(row);
    else {
      removed[reason] = (removed[reason] ?? 0) + 1;
      removedRows.push({ row: rows[i]!, reason }); // the original row, for tracing
    }
  });

  return {
    rows: kept,
    stats: { rowsIn: rows.length, rowsOut: kept.length, changedByRule, removed },
    removedRows,
  };
}
