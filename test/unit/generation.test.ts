// The generator's text logic without a model: prompt rendering (plain format), conversation checks, and
// what a stream may show as tokens come (held-back endings, stop strings, repeated sentences), and the
// repetition controls on hand-made logits. The model side is in test/integration/generation.test.ts.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PromptFormat } from '../../schemas/engine';
import { AnswerText, heldBackLength } from '../../serve/answer-text';
import { AnswerRow, type DecodeSettings, type StreamChunk } from '../../serve/decode-loop';
import { promptMessages, renderPlainPrompt, type ChatMessage } from '../../serve/prompts';
import { normalisedSentence, repeatedSentenceCut, repetitionHoldFrom } from '../../serve/repetition';
import { argmax, bannedNextTokens, controlRepetition, greedyWithEnd } from '../../serve/sampling';
import type { PromptTokenizer } from '../../serve/tokenizer';

const PLAIN: PromptFormat = { kind: 'plain', systemPrompt: null, separator: '<|answer|>', endOfTurn: '<|endoftext|>', grounding: null };
const CONVERSATION: ChatMessage[] = [
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello!' },
  { role: 'user', content: 'Reset my router?' },
];

describe('plain prompt format', () => {
  it('renders a single question exactly as training did', () => {
    expect(renderPlainPrompt(PLAIN, 'How do I reset it?')).toBe('How do I reset it?<|answer|>');
    expect(renderPlainPrompt({ ...PLAIN, systemPrompt: 'Be brief.' }, 'Q?')).toBe('Be brief.\n\nQ?<|answer|>');
  });

  it('renders a conversation as one training example per earlier exchange, then the question', () => {
    expect(renderPlainPrompt(PLAIN, CONVERSATION)).toBe('Hi<|answer|>Hello!<|endoftext|>Reset my router?<|answer|>');
    expect(renderPlainPrompt({ ...PLAIN, systemPrompt: 'Be brief.' }, CONVERSATION)).toBe(
      'Be brief.\n\nHi<|answer|>Hello!<|endoftext|>Reset my router?<|answer|>',
    );
    // The conversation's own system message replaces the export's.
    const withSystem: ChatMessage[] = [{ role: 'system', content: 'Be kind.' }, ...CONVERSATION];
    expect(renderPlainPrompt({ ...PLAIN, systemPrompt: 'Be brief.' }, withSystem)).toBe(
      'Be kind.\n\nHi<|answer|>Hello!<|endoftext|>Reset my router?<|answer|>',
    );
    expect(renderPlainPrompt(PLAIN, [{ role: 'user', content: 'Q?' }])).toBe(renderPlainPrompt(PLAIN, 'Q?'));
  });

  it('renders a seq2seq conversation as lines of text before the question, the question alone as training did', () => {
    const seq2seq: PromptFormat = { kind: 'seq2seq', systemPrompt: 'Be brief.', separator: null, endOfTurn: '</s>', grounding: null };
    expect(renderPlainPrompt(seq2seq, 'Q?')).toBe('Be brief.\n\nQ?');
    expect(renderPlainPrompt({ ...seq2seq, systemPrompt: null }, 'Q?')).toBe('Q?');
    expect(renderPlainPrompt(seq2seq, CONVERSATION)).toBe('Be brief.\n\nHi\nHello!\n\nReset my router?');
  });

  it('needs user and assistant taking turns', () => {
    const twoQuestions: ChatMessage[] = [
      { role: 'user', content: 'a' },
      { role: 'user', content: 'b' },
    ];
    expect(() => renderPlainPrompt(PLAIN, twoQuestions)).toThrow(/taking turns/);
    expect(() => promptMessages(twoQuestions, null)).not.toThrow(); // a chat template may take them
  });
});

describe('conversation messages', () => {
  it('puts the export system prompt first unless the conversation has one', () => {
    expect(promptMessages('Q?', null)).toEqual([{ role: 'user', content: 'Q?' }]);
    expect(promptMessages('Q?', 'Be brief.')).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Q?' },
    ]);
    expect(promptMessages(CONVERSATION, 'Be brief.')).toEqual([{ role: 'system', content: 'Be brief.' }, ...CONVERSATION]);
    const own: ChatMessage[] = [{ role: 'system', content: 'Be kind.' }, ...CONVERSATION];
    expect(promptMessages(own, 'Be brief.')).toEqual(own);
    expect(promptMessages('Q?', '')).toEqual([{ role: 'user', content: 'Q?' }]); // empty means none, as in the engine
  });

  it('reports every problem of a conversation at once', () => {
    const bad = [
      { role: 'user', content: 'a' },
      { role: 'system', content: 'late' },
      { role: 'robot', content: 'b' },
      { role: 'assistant', content: 3 },
    ] as unknown as ChatMessage[];
    let message = '';
    try {
      promptMessages(bad, null);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/message 2: a system message may only come first/);
    expect(message).toMatch(/message 3: role "robot"/);
    expect(message).toMatch(/message 4: content must be a string/);
    expect(message).toMatch(/must end with a user message/);
    expect(() => promptMessages([], null)).toThrow(/no messages/);
  });
});

/** Shows `texts` one decode at a time; returns the chunks and the tracker. */
function follow(texts: string[], stops: string[] = [], unsettled: string[] = []) {
  const answer = new AnswerText(stops, unsettled);
  const chunks = texts.map((text) => answer.update(text));
  return { answer, chunks };
}

describe('streamed answer text', () => {
  it('holds back an incomplete UTF-8 character until it is complete', () => {
    const { answer, chunks } = follow(['\uFFFD', '日', '日本\uFFFD', '日本\uFFFD\uFFFD', '日本語']);
    expect(chunks).toEqual(['', '日', '本', '', '語']);
    expect(answer.finish('日本語')).toBe('');
    expect(chunks.join('')).toBe(answer.shown);
  });

  it('never shows part of a stop string that then completes, and cuts the text before it', () => {
    const { answer, chunks } = follow(['Hello', 'Hello\nUs', 'Hello\nUser', 'Hello\nUser: hi'], ['\nUser:']);
    expect(chunks).toEqual(['Hello', '', '', '']);
    expect(answer.stopAt).toBe(5);
    expect(answer.shown).toBe('Hello');
  });

  it('shows held-back text once it can no longer become a stop string', () => {
    const { answer, chunks } = follow(['a\nU', 'a\nUp'], ['\nUser:']);
    expect(chunks).toEqual(['a', '\nUp']);
    expect(answer.stopAt).toBeNull();
  });

  it('ends at the earliest of several stop strings', () => {
    const { answer } = follow(['one two three'], ['three', 'two']);
    expect(answer.shown).toBe('one ');
  });

  it('holds back an ending the tokenizer cleanup may rewrite', () => {
    const { answer, chunks } = follow(['Hello', 'Hello ', 'Hello.'], [], [' .']);
    expect(chunks).toEqual(['Hello', '', '.']);
    expect(answer.shown).toBe('Hello.');
    expect(heldBackLength('do n', [" n't"])).toBe(2);
    expect(heldBackLength("do n't", [" n't"])).toBe(0); // whole: already rewritten, nothing pending
  });
});

/** Character tokens: id = char code; 0 is eos. */
const charTokenizer = {
  decode: (ids: number[]) => String.fromCharCode(...ids),
  eosIds: [0],
  unsettledEndings: [],
} as unknown as PromptTokenizer;
const settings = (overrides: Partial<DecodeSettings>): DecodeSettings => ({
  maxNewTokens: 10,
  greedy: true,
  temperature: 1,
  topP: 1,
  seed: 0,
  stop: [],
  followText: true,
  ...overrides,
});
const feed = (row: AnswerRow, text: string): StreamChunk[] => [...text].map((char) => row.accept(char.charCodeAt(0)));

describe('one answer row', () => {
  it('eos ends it with a chunk that releases held-back text', () => {
    const row = new AnswerRow([], charTokenizer, settings({ stop: ['!!'] }));
    const chunks = [...feed(row, 'hi!'), row.accept(0)];
    expect(chunks.map((chunk) => chunk.text)).toEqual(['h', 'i', '', '!']);
    expect(row.result()).toEqual({ tokens: [104, 105, 33], text: 'hi!', finishReason: 'stop' });
  });

  it('a stop string ends it; its tokens stay, its text goes', () => {
    const row = new AnswerRow([], charTokenizer, settings({ stop: ['!!'] }));
    const chunks = feed(row, 'hi!!');
    expect(chunks.map((chunk) => chunk.text).join('')).toBe('hi');
    expect(row.result()).toEqual({ tokens: [104, 105, 33, 33], text: 'hi', finishReason: 'stop-string' });
  });

  it('maxNewTokens ends it with the last chunk carrying all the rest', () => {
    const row = new AnswerRow([], charTokenizer, settings({ maxNewTokens: 3, stop: ['!!'] }));
    expect(feed(row, 'hi!').map((chunk) => chunk.text)).toEqual(['h', 'i', '!']);
    expect(row.result()).toEqual({ tokens: [104, 105, 33], text: 'hi!', finishReason: 'length' });
  });

  it('cancelled keeps the text shown so far, whether or not it was followed', () => {
    for (const followText of [true, false]) {
      const row = new AnswerRow([], charTokenizer, settings({ followText, stop: followText ? ['!!'] : [] }));
      feed(row, 'ok\uFFFD');
      row.finish('cancelled');
      expect(row.result()).toEqual({ tokens: [111, 107, 0xfffd], text: 'ok', finishReason: 'cancelled' });
    }
  });
});

// The cases engine/tests/test_decoding.py checks engine/decoding.py on: the two sides must agree.
const SENTENCE_CASES = (
  JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'repeated-sentences.json'), 'utf8')) as {
    cases: Array<{ text: string; ended: boolean; cut: number | null; why: string }>;
  }
).cases;

describe('the repeated-sentence rule', () => {
  it.each(SENTENCE_CASES)('$why', ({ text, ended, cut }) => {
    expect(repeatedSentenceCut(text, ended)).toBe(cut);
  });

  it('normalises as the engine does', () => {
    expect(normalisedSentence("  I DON'T   know!! ")).toBe('i dont know');
    expect(normalisedSentence('\u00abOui\u00bb,\u3000merci')).toBe('oui merci');
    expect(normalisedSentence('...')).toBe('');
  });

  it('holds back a sentence while it may still repeat an earlier one, and the space before it', () => {
    expect(repetitionHoldFrom('Ab. ')).toBe(3); // an earlier sentence exists: the next may repeat it
    expect(repetitionHoldFrom('Ab. a')).toBe(3);
    expect(repetitionHoldFrom('Ab. AB!')).toBe(3);
    expect(repetitionHoldFrom('Ab. ac')).toBe(6); // can no longer become "ab"
    expect(repetitionHoldFrom('Ab')).toBe(2); // no earlier sentence
  });
});

describe('one answer row with stopOnRepetition', () => {
  const looping = (overrides: Partial<DecodeSettings> = {}) =>
    new AnswerRow([], charTokenizer, settings({ maxNewTokens: 40, stopOnRepetition: true, ...overrides }));

  it('ends at the token completing a repeat; keeps its tokens, cuts its text; no chunk shows what is cut', () => {
    const row = looping();
    const chunks = feed(row, 'Ab. cd. AB!');
    expect(row.finishReason).toBeNull(); // "AB!" is complete only once whitespace follows
    chunks.push(...feed(row, ' '));
    expect(row.result()).toEqual({ tokens: [...'Ab. cd. AB! '].map((c) => c.charCodeAt(0)), text: 'Ab. cd.', finishReason: 'repetition' });
    expect(chunks.map((chunk) => chunk.text).join('')).toBe('Ab. cd.');
  });

  it('shows a sentence once it can no longer repeat', () => {
    const row = looping();
    expect(feed(row, 'ab. ab').map((chunk) => chunk.text)).toEqual(['a', 'b', '.', '', '', '']);
    expect(feed(row, 'c').map((chunk) => chunk.text)).toEqual([' abc']);
  });

  it('the end of the answer completes its last sentence: at eos and at maxNewTokens', () => {
    const atEos = looping();
    const chunks = [...feed(atEos, 'ab. ab'), atEos.accept(0)];
    expect(atEos.result()).toEqual({ tokens: [...'ab. ab'].map((c) => c.charCodeAt(0)), text: 'ab.', finishReason: 'repetition' });
    expect(chunks.map((chunk) => chunk.text).join('')).toBe('ab.');
    const atLength = looping({ maxNewTokens: 6 });
    feed(atLength, 'ab. ab');
    expect(atLength.result()).toMatchObject({ text: 'ab.', finishReason: 'repetition' });
    const clean = looping({ maxNewTokens: 6 });
    feed(clean, 'ab. cd');
    expect(clean.result()).toMatchObject({ text: 'ab. cd', finishReason: 'length' });
  });

  it('a line break ends a sentence; a stop string still wins when both come at once', () => {
    const row = looping();
    feed(row, 'Yes\nyes\n');
    expect(row.result()).toMatchObject({ text: 'Yes', finishReason: 'repetition' });
    const both = looping({ stop: ['b. '] });
    feed(both, 'ab. ab. ');
    expect(both.result()).toMatchObject({ text: 'a', finishReason: 'stop-string' });
  });

  it('off: the same text runs on', () => {
    const row = new AnswerRow([], charTokenizer, settings({ maxNewTokens: 13 }));
    feed(row, 'Ab. cd. AB! x');
    expect(row.result()).toMatchObject({ text: 'Ab. cd. AB! x', finishReason: 'length' });
  });
});

describe('repetition controls on logits', () => {
  it('penalises each token of the answer once: divided when positive, multiplied when negative', () => {
    const logits = Float32Array.of(4, -4, 2, -1, 5);
    expect([...controlRepetition(logits, [2, 2, 3], 2, 0)]).toEqual([4, -4, 1, -2, 5]);
    expect([...logits]).toEqual([4, -4, 2, -1, 5]); // a copy: the model's output is left alone
    // float32 arithmetic, as torch does it: the penalty rounded to float32, the quotient too.
    expect(controlRepetition(Float32Array.of(1), [0], 1.3, 0)[0]).toBe(Math.fround(1 / Math.fround(1.3)));
  });

  it('bans the token that would repeat an n-gram of the answer, after the penalty', () => {
    expect(bannedNextTokens([1, 2, 3, 1, 2], 3)).toEqual([3]);
    expect(bannedNextTokens([1, 2, 1, 2, 1], 2)).toEqual([2, 2]);
    expect(bannedNextTokens([1, 4], 1)).toEqual([1, 4]);
    expect(bannedNextTokens([1, 2], 3)).toEqual([]); // no complete n-gram yet
    expect([...controlRepetition(new Float32Array(5), [1, 2, 3, 1, 2], 1.5, 3)]).toEqual([0, 0, 0, -Infinity, 0]);
  });
});

describe('greedy with an end rule', () => {
  // Token 0 ends the answer with 0.4 of the probability; tokens 1-4 go on with 0.15 each.
  const logits = Float32Array.from([0.4, 0.15, 0.15, 0.15, 0.15], Math.log);
  logits[3] = Math.fround(Math.log(0.16)); // the likeliest way to go on (the rest renormalises)

  it('ends only when the end tokens hold at least the set probability', () => {
    expect(argmax(logits)).toBe(0); // plain greedy ends: 0.4 beats every single word
    expect(greedyWithEnd(logits, [0], 0.5)).toBe(3); // going on (0.6) is likelier than ending
    expect(greedyWithEnd(logits, [0], 0.3)).toBe(0);
  });

  it('counts every end token together and picks the likeliest of them', () => {
    const twoEnds = Float32Array.from([0.28, 0.12, 0.27, 0.33], Math.log); // ends 0 and 2: 0.55 together
    expect(argmax(twoEnds)).toBe(3);
    expect(greedyWithEnd(twoEnds, [0, 2], 0.5)).toBe(0);
    expect(greedyWithEnd(twoEnds, [2, 0], 0.6)).toBe(3);
  });

  it('never ends on a banned end token, nor goes on when only end tokens are left', () => {
    expect(greedyWithEnd(Float32Array.of(-Infinity, 1, 2), [0], 0.5)).toBe(2);
    expect(greedyWithEnd(Float32Array.of(0, -Infinity, -Infinity), [0], 0.5)).toBe(0);
  });
});
