import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { cleanRows, cleanText, lowInformationAnswers } from '../../activities/data/clean';
import { normalizeForMatch } from '../../activities/data/dedup';
import { CleanSection } from '../../schemas/config';
import type { QaRow } from '../../schemas/rows';

const defaults = CleanSection.parse({});
// Overrides as a YAML file would write them: a nested section may name only some of its fields.
const rules = (overrides: z.input<typeof CleanSection>): CleanSection => CleanSection.parse({ ...overrides });

function row(id: string, question: string, answer: string, extra: Partial<QaRow> = {}): QaRow {
  return {
    id,
    sourceRow: Number(id.replace(/\D/g, '')) || 1,
    question,
    answer,
    category: null,
    product: null,
    fact: null,
    ...extra,
  };
}

describe('cleanText', () => {
  it.each([
    ['nested tags', '<div><p>Hello <b><i>world</i></b></p><p>again</p></div>', 'Hello world again'],
    ['br and li separate words', 'one<br>two<ul><li>three</li><li>four</li></ul>', 'one two three four'],
    ['inline tags join', 'Aur<b>ora</b> Pulse', 'Aurora Pulse'],
    ['script and style contents dropped', '<script>alert(1)</script>Hi<style>.a{color:red}</style>there', 'Hi there'],
    ['comments dropped', 'a<!-- hidden -->b', 'a b'],
    ['encoded tags stay literal', '&lt;b&gt;bold&lt;/b&gt;', '<b>bold</b>'],
    ['entities decoded once', 'fish &amp;amp; chips', 'fish &amp; chips'],
    ['decimal and hex apostrophes', 'It&#8217;s &#x2019;ok&rsquo;', "It's 'ok'"],
    ['named entities', 'A&nbsp;B &copy; 5&deg; &ldquo;x&rdquo; &hellip;', 'A B © 5° "x" ...'],
    ['windows-1252 numeric references', 'it&#146;s', "it's"],
    ['unknown entity kept', 'a &bogus; b &#xZZ; c', 'a &bogus; b &#xZZ; c'],
    ['HTML5 named entities beyond the common ones', 'Settings &rarr; Reset &hearts; &check;', 'Settings → Reset ♥ ✓'],
    ['decimal and hex numeric entities', '&#8364;5 &#x2192; &#X1F600; &#65;', '€5 → 😀 A'],
    ['legacy entity without semicolon, as browsers read it', 'fish &amp chips &copy 2024', 'fish & chips © 2024'],
    ['URL query parameters named like entities survive', 'https://x.io/?id=5&reg=us&copy=1', 'https://x.io/?id=5&reg=us&copy=1'],
    ['unknown name that starts like a legacy entity kept', 'a &notanentity; b & c &', 'a &notanentity; b & c &'],
    ['prose with < is not a tag', '5 < 6 and I <3 it', '5 < 6 and I <3 it'],
    ['NFKC folds full-width', 'ＵＳＢ－Ｃ ｐｏｒｔ', 'USB-C port'],
    ['combining accent composed', 'cafe\u0301', 'caf\u00e9'],
    ['zero-width inside words', 'pass\u200Bwo\u200Crd\uFEFF', 'password'],
    ['control characters', 'bell\u0007 ring\u0085end', 'bell ring end'],
    ['soft hyphen and private use', 're\u00ADset \uE000done', 'reset done'],
    ['emoji kept, including ZWJ sequences', 'great 😀 👩‍💻 👍🏽', 'great 😀 👩‍💻 👍🏽'],
    ['curly quotes, dashes, ellipsis', '“Hold it” — 10–20 s… ‘ok’', '"Hold it" - 10-20 s... \'ok\''],
    ['unicode spaces', 'a\u2009b\u3000c\u00A0d', 'a b c d'],
    ['whitespace collapsed and trimmed', '  a \n\n b\t\tc  ', 'a b c'],
  ])('%s', (_name, input, expected) => {
    expect(cleanText(input, defaults)).toBe(expected);
  });

  it('removes URLs only when asked, keeping trailing punctuation', () => {
    const text = 'See https://example.com/help?a=1. Or www.example.org, then call.';
    expect(cleanText(text, defaults)).toBe(text);
    expect(cleanText(text, rules({ removeUrls: true }))).toBe('See . Or , then call.');
  });

  it('leaves each aspect untouched when its rule is off', () => {
    expect(cleanText('<b>hi</b>', rules({ stripHtml: false }))).toBe('<b>hi</b>');
    expect(cleanText('a &amp; b', rules({ decodeEntities: false }))).toBe('a &amp; b');
    expect(cleanText('ＵＳＢ cafe\u0301', rules({ normalizeUnicode: 'none' }))).toBe('ＵＳＢ cafe\u0301');
    expect(cleanText('ＵＳＢ cafe\u0301', rules({ normalizeUnicode: 'NFC' }))).toBe('ＵＳＢ caf\u00e9');
    expect(cleanText('“x” — y', rules({ normalizePunctuation: false }))).toBe('“x” — y');
    expect(cleanText('a\u200Bb\uFEFF\u0007', rules({ dropControlChars: false }))).toBe('a\u200Bb\uFEFF\u0007');
    expect(cleanText(' a   b ', rules({ collapseWhitespace: false }))).toBe(' a   b ');
  });

  it('does nothing with every rule off', () => {
    const off = rules({
      stripHtml: false,
      decodeEntities: false,
      normalizeUnicode: 'none',
      normalizePunctuation: false,
      dropControlChars: false,
      collapseWhitespace: false,
    });
    const messy = ' <p>ＵＳＢ&amp;“x”\u200B\u0007  </p> ';
    expect(cleanText(messy, off)).toBe(messy);
  });
});

describe('cleanRows', () => {
  it('cleans question, answer and fact alike and counts changes per rule', () => {
    const rows = [
      row('r1', '<p>How&nbsp;do I pair?</p>', 'Hold the button for 5&nbsp;s.', { fact: 'Hold&nbsp;5&nbsp;s' }),
      row('r2', 'Plain question?', 'Plain answer.'),
      row('r3', 'Is it “waterproof”?', 'Yes.'),
    ];
    const { rows: out, stats } = cleanRows(rows, defaults);
    expect(out.map((r) => [r.question, r.answer, r.fact])).toEqual([
      ['How do I pair?', 'Hold the button for 5 s.', 'Hold 5 s'],
      ['Plain question?', 'Plain answer.', null],
      ['Is it "waterproof"?', 'Yes.', null],
    ]);
    expect(stats).toMatchObject({ rowsIn: 3, rowsOut: 3, removed: {} });
    // NFKC turns the decoded no-break space into a space; removeUrls is off, so it has no count.
    expect(stats.changedByRule).toEqual({
      stripHtml: 1,
      decodeEntities: 1,
      normalizeUnicode: 1,
      dropControlChars: 0,
      normalizePunctuation: 1,
      collapseWhitespace: 1,
    });
    expect(out[0]).toMatchObject({ id: 'r1', sourceRow: 1, category: null });
  });

  it('removes empty, too-short and matching answers with reasons', () => {
    const rows = [
      row('r1', '<p> </p>', 'An answer.'),
      row('r2', 'Question?', '<br>\u200B'),
      row('r3', 'Question two?', 'Ok'),
      row('r4', 'Question three?', "  I DON'T KNOW "),
      row('r5', 'Question four?', "I don't know, but try restarting it."),
      row('r6', 'Question five?', 'N/A'),
    ];
    const { rows: out, stats, removedRows } = cleanRows(rows, rules({ minAnswerChars: 3, dropAnswersMatching: ["i don'?t know", 'n/?a'] }));
    expect(out.map((r) => r.id)).toEqual(['r5']);
    expect(removedRows.map((r) => [r.row.id, r.reason])).toEqual([
      ['r1', 'empty after cleaning'],
      ['r2', 'empty after cleaning'],
      ['r3', 'answer shorter than minAnswerChars (3)'],
      ['r4', `answer matches dropAnswersMatching "i don'?t know"`],
      ['r6', 'answer matches dropAnswersMatching "n/?a"'],
    ]);
    expect(removedRows[0]!.row.question).toBe('<p> </p>'); // the original row, for tracing
    expect(stats.removed).toEqual({
      'empty after cleaning': 2,
      'answer shorter than minAnswerChars (3)': 1,
      [`answer matches dropAnswersMatching "i don'?t know"`]: 1,
      'answer matches dropAnswersMatching "n/?a"': 1,
    });
    expect(stats.rowsIn).toBe(stats.rowsOut + removedRows.length);
  });

  it('the low-information rule removes a planted "I don\'t know" cluster and nothing else', () => {
    const idk = ["I don't know.", 'i dont know', "I DON'T KNOW!", 'I don&#8217;t know', '<p>I don’t   know</p>', "i don't know..."];
    const template = 'Thank you for your question! Please contact our customer service team with your order number for help.';
    const rows = [
      // The cluster: six phrasings that normalise to "i dont know", to six different questions.
      ...idk.map((answer, n) => row(`k${n}`, `Does part ${n} fit the WX${n} model?`, answer)),
      // Short answers to fewer different questions than minQuestions (5): facts, not filler.
      ...['the fridge', 'the oven', 'the dryer'].map((thing, n) => row(`c${n}`, `What colour is ${thing}?`, 'Black')),
      // A short answer asked again and again by the same question counts that question once.
      ...Array.from({ length: 6 }, (_, n) => row(`y${n}`, n % 2 ? 'Is it 220V?' : 'is it 220v', 'Yes, 220 V.')),
      // A seller's long template, repeated often: over maxWords, so it stays.
      ...Array.from({ length: 8 }, (_, n) => row(`t${n}`, `Question ${n} about shipping?`, template)),
      row('n1', 'How long is the power cord?', 'About 6 feet.'),
    ];
    const { rows: out, stats, removedRows } = cleanRows(rows, defaults);
    expect(removedRows.map((r) => [r.row.id, r.reason])).toEqual(idk.map((_, n) => [`k${n}`, 'low-information']));
    expect(removedRows[3]!.row.answer).toBe('I don&#8217;t know'); // the original row, for tracing
    expect(out).toHaveLength(rows.length - idk.length);
    expect(stats).toMatchObject({ rowsIn: rows.length, rowsOut: rows.length - idk.length, removed: { 'low-information': 6 } });

    // Above the cluster's six questions, or switched off, nothing goes.
    expect(cleanRows(rows, rules({ lowInformation: { minQuestions: 7 } })).removedRows).toEqual([]);
    expect(cleanRows(rows, rules({ lowInformation: { enabled: false } })).removedRows).toEqual([]);
    // The thresholds decide the rest: "Black" goes at 3 questions, the 17-word template at 20 words.
    expect(lowInformationAnswers(rows, { enabled: true, maxWords: 6, minQuestions: 3 })).toEqual(new Set(['i dont know', 'black']));
    expect(lowInformationAnswers(rows, { enabled: true, maxWords: 20, minQuestions: 5 })).toContain(normalizeForMatch(template));
  });

  it('counts the questions of rows another rule removes; each row is counted under its first reason', () => {
    const answers = ["I don't know", 'i dont know', 'I dont know!', "I DON'T KNOW.", "I don't know", 'About 6 feet.'];
    const rows = answers.map((answer, n) => row(`r${n}`, `Question ${n}?`, answer));
    const { removedRows, stats } = cleanRows(rows, rules({ dropAnswersMatching: ["i don'?t know"] }));
    const pattern = `answer matches dropAnswersMatching "i don'?t know"`;
    // The pattern is anchored, so "!" and "." escape it; the five questions still make the cluster.
    expect(removedRows.map((r) => [r.row.id, r.reason])).toEqual([
      ['r0', pattern],
      ['r1', pattern],
      ['r2', 'low-information'],
      ['r3', 'low-information'],
      ['r4', pattern],
    ]);
    expect(stats.removed).toEqual({ [pattern]: 3, 'low-information': 2 });
  });

  it('counts characters, not UTF-16 units, for minAnswerChars', () => {
    const { rows: out } = cleanRows([row('r1', 'Mood?', '😀😀')], rules({ minAnswerChars: 2 }));
    expect(out).toHaveLength(1);
  });

  it('names an invalid dropAnswersMatching pattern', () => {
    // The schema rejects it too; bypass parsing to reach cleanRows' own check.
    const bad = { ...defaults, dropAnswersMatching: ['ok', '(unclosed'] };
    expect(() => cleanRows([row('r1', 'q', 'a')], bad)).toThrow(/"\(unclosed"/);
  });
});
