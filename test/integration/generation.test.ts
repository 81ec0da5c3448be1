// Node generation (serve/) against the engine: same prompt ids, same greedy tokens as PyTorch; and the
// streaming generator against the batch one (same tokens, stop strings, cancelling); and the repetition
// controls on a tiny model made to loop, token for token against engine/decoding.py.
// The fixtures are real exports of a tiny random Llama with SmolLM2's tokenizer and chat template, and of
// the same Llama trained to say one sentence over and over; and of tiny GPT-2 (plain format), T5 and BART
// (encoder-decoder, seq2seq format) models.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { AnswerRow } from '../../serve/decode-loop';
import {
  loadGenerator,
  type ChatMessage,
  type GenerateOptions,
  type Generation,
  type Generator,
  type StreamChunk,
} from '../../serve/generation';
import { ExportManifest, type ExportQuality } from '../../schemas/engine';
import { groundedQuestion } from '../../serve/grounding';
import { loadPromptTokenizer } from '../../serve/tokenizer';

const root = join(import.meta.dirname, '..', '..');
const python = join(root, '.venv', 'bin', 'python');
const QUESTIONS = ['How do I reset my router?', 'Hi', 'Can I return the smart watch if the strap broke after two weeks?'];
const NEW_TOKENS = 12;

// PyTorch reference: prompts from the engine's own PromptEncoder, greedy tokens from export.torch_greedy
// (generate with do_sample=False), eos dropped as the Node side drops it.
const REFERENCE = `
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from engine.export import end_token_ids, torch_greedy
from engine.prompts import PromptEncoder
folder, questions, new_tokens = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(folder)
encoder = PromptEncoder.prepare_tokenizer(tokenizer, system_prompt=None)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
eos = end_token_ids(tokenizer, encoder.format)
rows = []
for question in questions:
    ids = encoder.prompt_ids(question)
    tokens = torch_greedy(model, ids, new_tokens, eos, tokenizer.pad_token_id)
    rows.append({"promptIds": ids, "greedy": [t for t in tokens if t not in eos], "eos": eos})
print(json.dumps(rows))
`;

interface Reference {
  promptIds: number[];
  greedy: number[];
  eos: number[];
}

let dir: string;
let generator: Generator;
let reference: Reference[];

function runPython(args: string[]): string {
  return execFileSync(python, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 24 });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tuneline-generation-'));
  // Wider random weights than the tiny model's init, so that attention decides the tokens (see tiny_models.py).
  runPython(['-m', 'engine.tests.tiny_models', 'wide', join(dir, 'tiny')]);
  runPython(['-m', 'engine', 'export', '--model', join(dir, 'tiny'), '--output', join(dir, 'onnx'), '--parity-prompts', '1']);
  const lines = runPython(['-c', REFERENCE, join(dir, 'tiny'), JSON.stringify(QUESTIONS), String(NEW_TOKENS)])
    .trim()
    .split('\n');
  reference = JSON.parse(lines[lines.length - 1]!) as Reference[];
  generator = await loadGenerator(join(dir, 'onnx'));
}, 300_000);

afterAll(async () => {
  await generator?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('serve/generation against the engine', () => {
  it('encodes prompts exactly as engine/prompts.py does', () => {
    expect(generator.tokenizer.eosIds).toEqual(reference[0]!.eos);
    QUESTIONS.forEach((question, n) => {
      expect(generator.tokenizer.encodePrompt(question), question).toEqual(reference[n]!.promptIds);
    });
  });

  it('greedy tokens equal PyTorch, one question at a time', async () => {
    for (const [n, question] of QUESTIONS.entries()) {
      const [result] = await generator.generate([question], { maxNewTokens: NEW_TOKENS });
      expect(result!.tokens, question).toEqual(reference[n]!.greedy);
      expect(result!.text).toBe(generator.tokenizer.decode(reference[n]!.greedy));
    }
  });

  it('greedy tokens equal PyTorch when batched with left padding', async () => {
    const lengths = reference.map((row) => row.promptIds.length);
    expect(new Set(lengths).size).toBeGreaterThan(1); // the batch really is padded
    const results = await generator.generate(QUESTIONS, { maxNewTokens: NEW_TOKENS, greedy: true });
    expect(results.map((result) => result.tokens)).toEqual(reference.map((row) => row.greedy));
  });

  it('the fixture is not degenerate: greedy tokens vary', () => {
    expect(new Set(reference.flatMap((row) => row.greedy)).size).toBeGreaterThan(3);
  });

  it('sampling is reproducible with a seed and changes with another', async () => {
    const options = { maxNewTokens: NEW_TOKENS, greedy: false, temperature: 1, topP: 0.9 };
    const first = await generator.generate(QUESTIONS, { ...options, seed: 7 });
    const again = await generator.generate(QUESTIONS, { ...options, seed: 7 });
    const other = await generator.generate(QUESTIONS, { ...options, seed: 8 });
    expect(again).toEqual(first);
    expect(other.map((r) => r.tokens)).not.toEqual(first.map((r) => r.tokens));
    expect(first.map((r) => r.tokens)).not.toEqual(reference.map((row) => row.greedy));
  });

  it('stops at maxNewTokens', async () => {
    const results = await generator.generate(QUESTIONS, { maxNewTokens: 3 });
    results.forEach((result, n) => expect(result.tokens).toEqual(reference[n]!.greedy.slice(0, 3)));
    expect(await generator.generate(['Hi'], { maxNewTokens: 0 })).toEqual([{ tokens: [], text: '', finishReason: 'length' }]);
    expect(results.map((result) => result.finishReason)).toEqual(reference.map((row) => (row.greedy.length >= 3 ? 'length' : 'stop')));
  });

  it('rejects bad options with a message saying what to fix', async () => {
    await expect(generator.generate(['Hi'], { maxNewTokens: 4, greedy: false, temperature: 0 })).rejects.toThrow(/temperature/);
    await expect(generator.generate(['Hi'], { maxNewTokens: -1 })).rejects.toThrow(/maxNewTokens/);
    await expect(generator.generate(['Hi'], { maxNewTokens: 4, greedy: false, topP: 1.5 })).rejects.toThrow(/topP/);
    await expect(generator.generate(['Hi'], { maxNewTokens: 4, stop: ['\n', ''] })).rejects.toThrow(/empty stop string/);
    await expect(generator.stream('Hi', { maxNewTokens: 4, stop: [''] }).next()).rejects.toThrow(/empty stop string/);
  });

  it('rejects bad repetition controls, every problem at once', async () => {
    const bad = { maxNewTokens: 4, repetitionPenalty: 0.5, noRepeatNgramSize: 2.5, stopOnRepetition: 'yes' as unknown as boolean };
    const error = await generator.generate(['Hi'], bad).catch((caught: Error) => caught);
    expect(String(error)).toMatch(/repetitionPenalty: 0\.5; must be a number >= 1/);
    expect(String(error)).toMatch(/noRepeatNgramSize: 2\.5; must be an integer >= 0/);
    expect(String(error)).toMatch(/stopOnRepetition: yes; must be true or false/);
    await expect(generator.stream('Hi', { maxNewTokens: 4, repetitionPenalty: Number.NaN }).next()).rejects.toThrow(/repetitionPenalty/);
  });

  it('controls that are off change nothing', async () => {
    const off = { maxNewTokens: NEW_TOKENS, repetitionPenalty: 1, noRepeatNgramSize: 0, stopOnRepetition: false };
    const results = await generator.generate(QUESTIONS, off);
    expect(results.map((result) => result.tokens)).toEqual(reference.map((row) => row.greedy));
  });
});

describe('an int8 export of the same model', () => {
  let int8: Generator;
  let quality: ExportQuality;

  beforeAll(async () => {
    // Limits a random model passes: what is checked is that the recorded figures are what Node generates.
    const args = ['--quantize', 'int8', '--min-token-agreement', '0', '--max-perplexity-increase', '10', '--parity-prompts', '1'];
    runPython(['-m', 'engine', 'export', '--model', join(dir, 'tiny'), '--output', join(dir, 'int8'), ...args]);
    const manifest = ExportManifest.parse(JSON.parse(readFileSync(join(dir, 'int8', 'export.json'), 'utf8')));
    expect([manifest.file, manifest.dtype]).toEqual(['model_int8.onnx', 'int8']);
    quality = manifest.quality!;
    int8 = await loadGenerator(join(dir, 'int8'));
  }, 300_000);

  afterAll(async () => {
    await int8?.close();
  });

  it('loads in Node and generates', async () => {
    const [result] = await int8.generate(['How do I reset my router?'], { maxNewTokens: NEW_TOKENS });
    expect(result!.tokens.length).toBeGreaterThan(0);
    expect(result!.text).toBe(int8.tokenizer.decode(result!.tokens));
  });

  it("its recorded agreement with float32 is the share of float32's greedy tokens Node reproduces before the first difference", async () => {
    // Each answer's end counts as one token, whichever end token it was (as engine/quantize.py counts).
    const withEnd = (g: Generation) => [...g.tokens, ...(g.finishReason === 'stop' ? [-1] : [])];
    // One question at a time, as the engine measures: dynamic int8 quantizes each MatMul's input with one
    // scale for the whole batch, so an answer's tokens may depend on the rows beside it.
    const answers = async (model: Generator) => {
      const rows: number[][] = [];
      for (const question of quality.questions) {
        rows.push(withEnd((await model.generate([question], { maxNewTokens: quality.maxNewTokens }))[0]!));
      }
      return rows;
    };
    const float32 = await answers(generator);
    const quantized = await answers(int8);
    let identical = 0;
    float32.forEach((tokens, n) => {
      const differs = tokens.findIndex((token, at) => quantized[n]![at] !== token);
      identical += differs === -1 ? tokens.length : differs;
    });
    const compared = float32.reduce((sum, tokens) => sum + tokens.length, 0);
    expect({ identical, compared }).toEqual({ identical: quality.identicalTokens, compared: quality.comparedTokens });
    expect(quality.tokenAgreement).toBeCloseTo(identical / compared, 12);
  });
});

// transformers' own rendering of conversations (apply_chat_template with the generation prompt), the
// engine's PromptEncoder for a single question, and token ids of a text that splits UTF-8 characters.
const CHAT_REFERENCE = `
import json, sys
from transformers import AutoTokenizer
from engine.prompts import PromptEncoder, PromptFormat
cases = json.loads(sys.argv[1])
tokenizers = {}
rows = []
for case in cases:
    folder = case["folder"]
    tokenizer = tokenizers.setdefault(folder, AutoTokenizer.from_pretrained(folder))
    if "question" in case:
        rows.append(PromptEncoder(PromptFormat.load(folder), tokenizer).prompt_ids(case["question"]))
    elif "messages" in case:
        text = tokenizer.apply_chat_template(case["messages"], add_generation_prompt=True, tokenize=False)
        rows.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    else:
        rows.append(tokenizer(case["text"], add_special_tokens=False)["input_ids"])
print(json.dumps(rows))
`;

const CONVERSATION: ChatMessage[] = [
  { role: 'user', content: 'My router keeps dropping Wi-Fi.' },
  { role: 'assistant', content: 'Have you tried restarting it?' },
  { role: 'user', content: 'Yes, twice. What next?' },
];
const SYSTEM_MESSAGE: ChatMessage = { role: 'system', content: 'You are a support agent for a shop.' };
const EXPORT_SYSTEM_PROMPT = 'Answer in one sentence.';
const SPLIT_UTF8 = '日本語 🙂 ok';

/** A stream read to its end by hand, so its return value (the Generation) is kept. */
async function collect(
  stream: AsyncGenerator<StreamChunk, Generation>,
  onChunk: (count: number) => void = () => {},
): Promise<{ chunks: StreamChunk[]; generation: Generation }> {
  const chunks: StreamChunk[] = [];
  for (let next = await stream.next(); ; next = await stream.next()) {
    if (next.done) return { chunks, generation: next.value };
    chunks.push(next.value);
    onChunk(chunks.length);
  }
}

/** Counts `session.run` calls (one per decode step); `during(n)` runs inside the n-th, before it computes. */
function countRuns(during: (n: number) => void = () => {}) {
  // The sessions' class: ort types only its factory, but `create` returns instances of it.
  const sessions = (ort.InferenceSession as unknown as { prototype: { run(...args: unknown[]): Promise<unknown> } }).prototype;
  const run = sessions.run;
  let calls = 0;
  vi.spyOn(sessions, 'run').mockImplementation(function (this: unknown, ...args: unknown[]) {
    during(++calls);
    return run.apply(this, args);
  });
  return () => calls;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('conversations and the streaming generator', () => {
  let withSystemPrompt: string; // a copy of the export whose prompt_format.json has a system prompt
  let expectedIds: number[][]; // CHAT_REFERENCE's answers, in the order of the cases below

  beforeAll(() => {
    withSystemPrompt = join(dir, 'onnx-system-prompt');
    cpSync(join(dir, 'onnx'), withSystemPrompt, { recursive: true });
    const formatFile = join(withSystemPrompt, 'prompt_format.json');
    writeFileSync(formatFile, JSON.stringify({ ...JSON.parse(readFileSync(formatFile, 'utf8')), systemPrompt: EXPORT_SYSTEM_PROMPT }));
    const plain = join(dir, 'onnx');
    const cases = [
      { folder: plain, messages: CONVERSATION },
      { folder: plain, messages: [SYSTEM_MESSAGE, ...CONVERSATION] },
      { folder: withSystemPrompt, messages: [{ role: 'system', content: EXPORT_SYSTEM_PROMPT }, ...CONVERSATION] },
      { folder: withSystemPrompt, messages: [SYSTEM_MESSAGE, ...CONVERSATION] },
      { folder: withSystemPrompt, question: QUESTIONS[0]! },
      { folder: plain, text: SPLIT_UTF8 },
    ];
    const lines = runPython(['-c', CHAT_REFERENCE, JSON.stringify(cases)])
      .trim()
      .split('\n');
    expectedIds = JSON.parse(lines[lines.length - 1]!) as number[][];
  }, 120_000);

  it("a conversation's prompt ids equal transformers' apply_chat_template, with the export's system prompt first", () => {
    const systemTokenizer = loadPromptTokenizer(withSystemPrompt);
    expect(generator.tokenizer.encodePrompt(CONVERSATION)).toEqual(expectedIds[0]);
    expect(generator.tokenizer.encodePrompt([SYSTEM_MESSAGE, ...CONVERSATION])).toEqual(expectedIds[1]);
    expect(systemTokenizer.encodePrompt(CONVERSATION)).toEqual(expectedIds[2]);
    expect(systemTokenizer.encodePrompt([SYSTEM_MESSAGE, ...CONVERSATION])).toEqual(expectedIds[3]);
    expect(systemTokenizer.encodePrompt(QUESTIONS[0]!)).toEqual(expectedIds[4]);
    // A string is the one-user-turn conversation.
    expect(generator.tokenizer.encodePrompt([{ role: 'user', content: QUESTIONS[1]! }])).toEqual(reference[1]!.promptIds);
  });

  it('an export file that does not parse names the file and says to export again', () => {
    const broken = join(dir, 'onnx-broken');
    cpSync(join(dir, 'onnx'), broken, { recursive: true });
    writeFileSync(join(broken, 'prompt_format.json'), JSON.stringify({ kind: 'template' }));
    expect(() => loadPromptTokenizer(broken)).toThrow(/prompt_format\.json[\s\S]*re-run the export/);
    writeFileSync(join(broken, 'export.json'), '{"format": "onnx"');
    expect(() => loadPromptTokenizer(broken)).toThrow(/export\.json[\s\S]*re-run the export/);
  });

  it('streams the same tokens as the batch, greedy; chunks add up to the text', async () => {
    const batch = await generator.generate([...QUESTIONS, CONVERSATION], { maxNewTokens: NEW_TOKENS });
    for (const [n, prompt] of [...QUESTIONS, CONVERSATION].entries()) {
      const { chunks, generation } = await collect(generator.stream(prompt, { maxNewTokens: NEW_TOKENS }));
      expect(generation).toEqual(batch[n]);
      const eos = generation.finishReason === 'stop' ? [chunks[chunks.length - 1]!.token] : [];
      expect(chunks.map((chunk) => chunk.token)).toEqual([...generation.tokens, ...eos]);
      expect(chunks.map((chunk) => chunk.text).join('')).toBe(generation.text);
    }
  });

  it('streams the same tokens as the batch with seeded sampling', async () => {
    const options = { maxNewTokens: NEW_TOKENS, greedy: false, temperature: 1, topP: 0.9, seed: 7 };
    for (const prompt of [QUESTIONS[2]!, CONVERSATION]) {
      const [batch] = await generator.generate([prompt], options);
      const { chunks, generation } = await collect(generator.stream(prompt, options));
      expect(generation).toEqual(batch);
      expect(chunks.map((chunk) => chunk.text).join('')).toBe(generation.text);
    }
  });

  it('holds back an incomplete UTF-8 character: no U+FFFD in any chunk', () => {
    const ids = expectedIds[5]!;
    const decoded = ids.map((_, n) => generator.tokenizer.decode(ids.slice(0, n + 1)));
    expect(decoded.some((text) => text.includes('\uFFFD'))).toBe(true); // the tokens really split characters
    const settings = { maxNewTokens: ids.length, greedy: true, temperature: 1, topP: 1, seed: 0, stop: [], followText: true };
    const row = new AnswerRow([], generator.tokenizer, settings);
    const texts = ids.map((id) => row.accept(id).text);
    expect(texts.filter((text) => text.includes('\uFFFD'))).toEqual([]);
    expect(texts.join('')).toBe(SPLIT_UTF8);
    expect(row.result()).toEqual({ tokens: ids, text: SPLIT_UTF8, finishReason: 'length' });
  });

  it('a stop string ends generation and is not in the text', async () => {
    const [full] = await generator.generate([QUESTIONS[0]!], { maxNewTokens: NEW_TOKENS });
    // A stop string across two tokens: its first part must be held back, never shown.
    const half = Math.floor(full!.tokens.length / 2);
    const head = generator.tokenizer.decode(full!.tokens.slice(0, half));
    const stop = head.slice(-2) + full!.text.slice(head.length, head.length + 2);
    expect(full!.text.indexOf(stop)).toBe(head.length - 2);
    const before = full!.text.slice(0, head.length - 2);
    const options = { maxNewTokens: NEW_TOKENS, stop: ['never appears', stop] };
    const [batch] = await generator.generate([QUESTIONS[0]!], options);
    const { chunks, generation } = await collect(generator.stream(QUESTIONS[0]!, options));
    for (const result of [batch!, generation]) {
      expect(result.finishReason).toBe('stop-string');
      expect(result.text).toBe(before);
      expect(result.tokens).toEqual(full!.tokens.slice(0, half + 1)); // up to the token that completed it
    }
    expect(chunks.map((chunk) => chunk.text).join('')).toBe(before);
  });

  it('aborting the signal mid-stream stops it: no more decode steps, no more tokens', async () => {
    expect(reference[0]!.greedy.length).toBeGreaterThan(3);
    const runs = countRuns();
    const controller = new AbortController();
    const stream = generator.stream(QUESTIONS[0]!, { maxNewTokens: NEW_TOKENS, signal: controller.signal });
    const { chunks, generation } = await collect(stream, (count) => count === 3 && controller.abort());
    expect(runs()).toBe(3);
    expect(chunks).toHaveLength(3);
    expect(generation.finishReason).toBe('cancelled');
    expect(generation.tokens).toEqual(reference[0]!.greedy.slice(0, 3));
    expect(chunks.map((chunk) => chunk.text).join('')).toBe(generation.text);
  });

  it('breaking out of for await stops the stream', async () => {
    const runs = countRuns();
    const stream = generator.stream(QUESTIONS[0]!, { maxNewTokens: NEW_TOKENS });
    let count = 0;
    for await (const _ of stream) if (++count === 2) break;
    expect(runs()).toBe(2);
    expect(await stream.next()).toEqual({ done: true, value: undefined });
    expect(runs()).toBe(2);
  });

  it('a cancelled batch returns what it has', async () => {
    const controller = new AbortController();
    // Aborted while the third step runs: that step's tokens come after the abort and are dropped.
    const runs = countRuns((n) => n === 3 && controller.abort());
    const results = await generator.generate(QUESTIONS, { maxNewTokens: NEW_TOKENS, signal: controller.signal });
    expect(runs()).toBe(3);
    results.forEach((result, n) => {
      expect(result.finishReason).toBe('cancelled');
      expect(result.tokens).toEqual(reference[n]!.greedy.slice(0, 2));
      expect(generator.tokenizer.decode(result.tokens).startsWith(result.text)).toBe(true);
    });
    const aborted = await generator.generate(['Hi'], { maxNewTokens: 4, signal: AbortSignal.abort() });
    expect(aborted).toEqual([{ tokens: [], text: '', finishReason: 'cancelled' }]);
    expect(runs()).toBe(3);
  });

  it('a closed generator refuses to stream or generate, saying so', async () => {
    const closing = await loadGenerator(join(dir, 'onnx'));
    await closing.close();
    await expect(closing.stream('Hi', { maxNewTokens: 2 }).next()).rejects.toThrow(/closed; load it again/);
    await expect(closing.generate(['Hi'], { maxNewTokens: 2 })).rejects.toThrow(/closed; load it again/);
  });
});

// engine/decoding.py's greedy_answer (transformers generate() with the same controls as logits processors
// and a stopping criterion) on the looping model's own folder, for every case and question.
const LOOP_REFERENCE = `
import json, sys, torch
from dataclasses import asdict
from transformers import AutoModelForCausalLM, AutoTokenizer
from engine.decoding import DecodingControls, greedy_answer
from engine.export import end_token_ids
from engine.prompts import PromptEncoder
folder, questions, cases, new_tokens = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
tokenizer = AutoTokenizer.from_pretrained(folder)
encoder = PromptEncoder.prepare_tokenizer(tokenizer, system_prompt=None)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
eos = end_token_ids(tokenizer, encoder.format)
answers = {name: [asdict(greedy_answer(model, tokenizer, encoder.prompt_ids(question), new_tokens, eos, tokenizer.pad_token_id,
                                      DecodingControls.from_options(options))) for question in questions]
           for name, options in cases.items()}
print(json.dumps(answers))
`;

type DecodingControls = Pick<GenerateOptions, 'repetitionPenalty' | 'noRepeatNgramSize' | 'stopOnRepetition' | 'endProbability'>;
const PIPELINE_DEFAULTS: DecodingControls = { repetitionPenalty: 1.1, noRepeatNgramSize: 4, stopOnRepetition: true, endProbability: 0.5 };
const LOOP_TOKENS = 48; // the loop's sentence is 8 tokens: several laps
const LOOP_CASES = {
  plain: {},
  'penalty 1.3, n-gram 3': { repetitionPenalty: 1.3, noRepeatNgramSize: 3 },
  'penalty 1.3, n-gram 3, stop on repetition': { repetitionPenalty: 1.3, noRepeatNgramSize: 3, stopOnRepetition: true },
  'stop on repetition': { stopOnRepetition: true },
  'penalty 1.3': { repetitionPenalty: 1.3 },
  'the pipeline defaults': PIPELINE_DEFAULTS,
} satisfies Record<string, DecodingControls>;
type LoopCase = keyof typeof LOOP_CASES;

interface ReferenceAnswer {
  tokens: number[];
  text: string;
  finish_reason: string;
}

/** Builds a tiny model of engine/tests/tiny_models.py, exports it, and gets PyTorch's answers for every case. */
async function tinyExport<Case extends string>(
  kind: 'looping' | 'terse',
  questions: string[],
  cases: Record<Case, DecodingControls>,
): Promise<{ generator: Generator; reference: Record<Case, ReferenceAnswer[]> }> {
  const model = join(dir, `tiny-${kind}`);
  runPython(['-m', 'engine.tests.tiny_models', kind, model]);
  runPython(['-m', 'engine', 'export', '--model', model, '--output', join(dir, `onnx-${kind}`), '--parity-prompts', '1']);
  const lines = runPython(['-c', LOOP_REFERENCE, model, JSON.stringify(questions), JSON.stringify(cases), String(LOOP_TOKENS)])
    .trim()
    .split('\n');
  const reference = JSON.parse(lines[lines.length - 1]!) as Record<Case, ReferenceAnswer[]>;
  return { generator: await loadGenerator(join(dir, `onnx-${kind}`)), reference };
}

/** How often the most frequent n-gram of `tokens` occurs. */
function mostRepeatedNgram(tokens: number[], size: number): number {
  const counts = new Map<string, number>();
  for (let start = 0; start + size <= tokens.length; start++) {
    const key = tokens.slice(start, start + size).join(',');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return Math.max(0, ...counts.values());
}

/** Sentences of `text` said more than once, split and compared simply: a check independent of serve/repetition.ts. */
function repeatedSentences(text: string): string[] {
  const sentences = text
    .split(/(?<=[.!?])\s+/)
    .map((sentence) =>
      sentence
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s]/gu, '')
        .trim(),
    )
    .filter(Boolean);
  return sentences.filter((sentence, n) => sentences.indexOf(sentence) !== n);
}

describe('repetition controls on a model made to loop', () => {
  let loopGenerator: Generator;
  let loopReference: Record<LoopCase, ReferenceAnswer[]>;
  const options = (name: LoopCase): GenerateOptions => ({ maxNewTokens: LOOP_TOKENS, ...LOOP_CASES[name] });

  beforeAll(async () => {
    ({ generator: loopGenerator, reference: loopReference } = await tinyExport('looping', QUESTIONS, LOOP_CASES));
  }, 300_000);

  afterAll(async () => {
    await loopGenerator?.close();
  });

  it('plain greedy loops: a token 3-gram comes back again and again, a sentence repeats', async () => {
    for (const result of await loopGenerator.generate(QUESTIONS, options('plain'))) {
      expect(result.finishReason).toBe('length');
      expect(mostRepeatedNgram(result.tokens, 3)).toBeGreaterThanOrEqual(3);
      expect(repeatedSentences(result.text)).not.toEqual([]);
    }
  });

  it('noRepeatNgramSize leaves no n-gram of that size twice, greedy or sampled', async () => {
    const sampled = { greedy: false, temperature: 1, topP: 0.9, seed: 7 };
    for (const result of [
      ...(await loopGenerator.generate(QUESTIONS, options('penalty 1.3, n-gram 3'))),
      ...(await loopGenerator.generate(QUESTIONS, { ...options('penalty 1.3, n-gram 3'), ...sampled })),
    ]) {
      expect(result.tokens).toHaveLength(LOOP_TOKENS);
      expect(mostRepeatedNgram(result.tokens, 3)).toBe(1);
    }
    for (const result of await loopGenerator.generate(QUESTIONS, options('the pipeline defaults'))) {
      expect(mostRepeatedNgram(result.tokens, 4)).toBe(1);
    }
  });

  it('stopOnRepetition alone ends the loop at the first repeated sentence, with finishReason repetition', async () => {
    const plain = await loopGenerator.generate(QUESTIONS, options('plain'));
    const stopped = await loopGenerator.generate(QUESTIONS, options('stop on repetition'));
    stopped.forEach((result, n) => {
      expect(result.finishReason).toBe('repetition');
      expect(result.tokens.length).toBeLessThan(LOOP_TOKENS);
      expect(plain[n]!.tokens.slice(0, result.tokens.length)).toEqual(result.tokens); // the same tokens up to the stop
      expect(plain[n]!.text.startsWith(result.text)).toBe(true);
      expect(repeatedSentences(result.text)).toEqual([]);
      // What was cut is whitespace, then a sentence the text already has.
      const dropped = loopGenerator.tokenizer.decode(result.tokens).slice(result.text.length);
      expect(dropped).toMatch(/^\s+\S/);
      expect(repeatedSentences(`${result.text} ${dropped.trim().split(/(?<=[.!?])\s+/)[0]}`)).toHaveLength(1);
    });
  });

  it('Node and PyTorch agree token for token with the same repetition settings', async () => {
    for (const name of Object.keys(LOOP_CASES) as LoopCase[]) {
      const batch = await loopGenerator.generate(QUESTIONS, options(name));
      for (const [n, question] of QUESTIONS.entries()) {
        const [single] = await loopGenerator.generate([question], options(name));
        const expected = loopReference[name][n]!;
        expect(single!.tokens, `${name}: ${question}`).toEqual(expected.tokens);
        expect(single!.text, `${name}: ${question}`).toBe(expected.text);
        expect(single!.finishReason, `${name}: ${question}`).toBe(expected.finish_reason);
        expect(batch[n], `${name}, batched: ${question}`).toEqual(single);
      }
    }
    // Not vacuous: the controls did change the tokens, and the stop did fire, on both sides.
    const tokensOf = (name: LoopCase) => loopReference[name].map((answer) => answer.tokens);
    expect(tokensOf('penalty 1.3, n-gram 3')).not.toEqual(tokensOf('plain'));
    expect(loopReference['stop on repetition'].map((answer) => answer.finish_reason)).toEqual(QUESTIONS.map(() => 'repetition'));
  });

  it('streams what the batch makes with the controls on; no chunk shows text that is then cut', async () => {
    for (const name of ['stop on repetition', 'the pipeline defaults'] as const) {
      for (const question of QUESTIONS) {
        const [batch] = await loopGenerator.generate([question], options(name));
        const { chunks, generation } = await collect(loopGenerator.stream(question, options(name)));
        expect(generation).toEqual(batch);
        const eosIds = loopGenerator.tokenizer.eosIds;
        expect(chunks.map((chunk) => chunk.token).filter((token) => !eosIds.includes(token))).toEqual(generation.tokens);
        // Shown text only grows: had a chunk shown the cut repeat, the chunks would add up to more than the text.
        expect(chunks.map((chunk) => chunk.text).join('')).toBe(generation.text);
      }
    }
  });
});

// engine/tests/tiny_models.py TERSE_*: trained on answers that all start with this sentence, 4 in 10 ending there.
const TERSE_FIRST = 'Yes, it fits.';
const TERSE_QUESTIONS = ['How do I reset my router?', 'Can I return the smart watch?', 'Is this sticker flat?'];
const TERSE_CASES = {
  plain: {},
  'end probability 0.5': { endProbability: 0.5 },
  'end probability 0.2': { endProbability: 0.2 },
  'the pipeline defaults': PIPELINE_DEFAULTS,
} satisfies Record<string, DecodingControls>;
type TerseCase = keyof typeof TERSE_CASES;

describe('the end rule on a model that plain greedy cuts short', () => {
  let terseGenerator: Generator;
  let terseReference: Record<TerseCase, ReferenceAnswer[]>;
  const options = (name: TerseCase): GenerateOptions => ({ maxNewTokens: LOOP_TOKENS, ...TERSE_CASES[name] });

  beforeAll(async () => {
    ({ generator: terseGenerator, reference: terseReference } = await tinyExport('terse', TERSE_QUESTIONS, TERSE_CASES));
  }, 300_000);

  afterAll(async () => {
    await terseGenerator?.close();
  });

  it('plain greedy ends after the first sentence; endProbability 0.5 goes on to a second, then ends', async () => {
    const plain = await terseGenerator.generate(TERSE_QUESTIONS, options('plain'));
    const ruled = await terseGenerator.generate(TERSE_QUESTIONS, options('end probability 0.5'));
    plain.forEach((short, n) => {
      expect(short).toMatchObject({ text: TERSE_FIRST, finishReason: 'stop' });
      const longer = ruled[n]!;
      expect(longer.finishReason).toBe('stop');
      expect(longer.tokens.slice(0, short.tokens.length)).toEqual(short.tokens);
      expect(longer.text).toMatch(/^Yes, it fits\. \w+( \w+)+\.$/);
    });
    expect(await terseGenerator.generate(TERSE_QUESTIONS, options('end probability 0.2'))).toEqual(plain);
  });

  it('Node and PyTorch agree token for token with the end rule, alone and with the repetition controls', async () => {
    for (const name of Object.keys(TERSE_CASES) as TerseCase[]) {
      const batch = await terseGenerator.generate(TERSE_QUESTIONS, options(name));
      for (const [n, question] of TERSE_QUESTIONS.entries()) {
        const expected = terseReference[name][n]!;
        const [single] = await terseGenerator.generate([question], options(name));
        expect(single, `${name}: ${question}`).toEqual({
          tokens: expected.tokens,
          text: expected.text,
          finishReason: expected.finish_reason,
        });
        expect(batch[n], `${name}, batched: ${question}`).toEqual(single);
      }
    }
  });

  it('refuses an end probability outside (0, 1), naming it', async () => {
    for (const endProbability of [0, 1, Number.NaN]) {
      await expect(terseGenerator.generate(['Hi'], { maxNewTokens: 4, endProbability })).rejects.toThrow(
        `endProbability: ${endProbability}; must be a number in (0, 1)`,
      );
    }
  });
});

// The plain format in Node: a tiny random GPT-2 (no chat template) exported untuned, as the base-model
// baseline of a GPT-2 run is, with a system prompt. PyTorch's side is the engine's own load_for_export
// (the separator token added, its embedding row the mean of the others) and its PromptEncoder.
const PLAIN_REFERENCE = `
import json, sys
from pathlib import Path
from engine.export import end_token_ids, load_for_export, torch_greedy
from engine.prompts import PromptEncoder
folder, system_prompt, questions, new_tokens = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
model, tokenizer, prompt_format = load_for_export(Path(folder), system_prompt)
encoder = PromptEncoder(prompt_format, tokenizer)
eos = end_token_ids(tokenizer, prompt_format)
rows = []
for question in questions:
    ids = encoder.prompt_ids(question)
    tokens = torch_greedy(model, ids, new_tokens, eos, tokenizer.pad_token_id)
    # Greedy until the model's positions are used up (prompt and answer together), as generate stops there.
    until_full = torch_greedy(model, ids, model.config.n_positions - len(ids), eos, tokenizer.pad_token_id)
    rows.append({"promptIds": ids, "greedy": [t for t in tokens if t not in eos], "eos": eos,
                 "untilFull": [t for t in until_full if t not in eos], "positions": model.config.n_positions,
                 "separatorId": tokenizer.convert_tokens_to_ids(prompt_format.separator)})
print(json.dumps(rows))
`;

describe('a GPT-2 in the plain prompt format', () => {
  const SYSTEM_PROMPT = 'Answer briefly.';
  let plainGenerator: Generator;
  let plainReference: Array<Reference & { separatorId: number; untilFull: number[]; positions: number }>;

  beforeAll(async () => {
    runPython(['-m', 'engine.tests.tiny_models', 'gpt2-wide', join(dir, 'gpt2')]);
    const exportArgs = ['--model', join(dir, 'gpt2'), '--output', join(dir, 'onnx-gpt2'), '--system-prompt', SYSTEM_PROMPT];
    runPython(['-m', 'engine', 'export', ...exportArgs, '--parity-prompts', '1']);
    const lines = runPython(['-c', PLAIN_REFERENCE, join(dir, 'gpt2'), SYSTEM_PROMPT, JSON.stringify(QUESTIONS), String(NEW_TOKENS)])
      .trim()
      .split('\n');
    plainReference = JSON.parse(lines[lines.length - 1]!) as typeof plainReference;
    plainGenerator = await loadGenerator(join(dir, 'onnx-gpt2'));
  }, 300_000);

  afterAll(async () => {
    await plainGenerator?.close();
  });

  it('renders and encodes the prompt as engine/prompts.py does: system prompt, question, separator token', () => {
    expect(plainGenerator.tokenizer.promptFormat.kind).toBe('plain');
    expect(plainGenerator.tokenizer.eosIds).toEqual(plainReference[0]!.eos);
    QUESTIONS.forEach((question, n) => {
      const ids = plainGenerator.tokenizer.encodePrompt(question);
      expect(ids, question).toEqual(plainReference[n]!.promptIds);
      expect(ids[ids.length - 1]).toBe(plainReference[n]!.separatorId); // one token, the one the model has a row for
    });
  });

  it('greedy tokens equal PyTorch, one question at a time and batched with left padding', async () => {
    expect(new Set(plainReference.flatMap((row) => row.greedy)).size).toBeGreaterThan(3); // not degenerate
    expect(new Set(plainReference.map((row) => row.promptIds.length)).size).toBeGreaterThan(1); // the batch is padded
    for (const [n, question] of QUESTIONS.entries()) {
      const [result] = await plainGenerator.generate([question], { maxNewTokens: NEW_TOKENS });
      expect(result!.tokens, question).toEqual(plainReference[n]!.greedy);
    }
    const batched = await plainGenerator.generate(QUESTIONS, { maxNewTokens: NEW_TOKENS, greedy: true });
    expect(batched.map((result) => result.tokens)).toEqual(plainReference.map((row) => row.greedy));
    expect(batched.map((result) => result.text)).toEqual(plainReference.map((row) => plainGenerator.tokenizer.decode(row.greedy)));
  });

  it("an answer ends where the model's positions run out, as PyTorch's does; the batch goes on past a row that ended", async () => {
    const positions = plainReference[0]!.positions;
    expect(positions).toBe(128); // the tiny GPT-2's n_positions
    const results = await plainGenerator.generate(QUESTIONS, { maxNewTokens: 1000 });
    expect(results.map((result) => result.tokens)).toEqual(plainReference.map((row) => row.untilFull));
    const full = results.filter((result, n) => plainReference[n]!.promptIds.length + result.tokens.length === positions);
    expect(full.length).toBeGreaterThan(1); // rows of different prompt lengths end at different steps
    for (const result of full) expect(result.finishReason).toBe('length');
    await expect(plainGenerator.generate(['How do I reset it? '.repeat(40)], { maxNewTokens: 4 })).rejects.toThrow(
      /more than the 128 positions this model has/,
    );
  });
});

// Encoder-decoder models in the seq2seq prompt format: tiny random T5 and BART (engine/tests/tiny_models.py),
// exported untuned with a system prompt. PyTorch's side is the engine's own load_for_export, PromptEncoder and
// torch_greedy; the repetition controls and the end rule are transformers' processors over the answer alone
// (the decoder's start token not counted, as in Node).
const SEQ2SEQ_REFERENCE = `
import json, sys, torch
from pathlib import Path
from transformers import GenerationConfig, LogitsProcessorList, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor
from engine.decoding import answer_only, end_rule
from engine.export import end_token_ids, load_for_export, plain_generation_defaults, torch_greedy
from engine.prompts import PromptEncoder
folder, system_prompt, questions, context, new_tokens = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])
model, tokenizer, prompt_format = load_for_export(Path(folder), system_prompt)
encoder = PromptEncoder(prompt_format, tokenizer)
eos, pad = end_token_ids(tokenizer, prompt_format), tokenizer.pad_token_id
positions = getattr(model.config, "max_position_embeddings", None)

def answer(tokens):
    return [t for t in tokens if t not in eos]

def controlled(ids):
    processors = LogitsProcessorList([answer_only(RepetitionPenaltyLogitsProcessor(1.3), 1),
                                      answer_only(NoRepeatNGramLogitsProcessor(3), 1), end_rule(eos, 0.5)])
    settings = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=new_tokens, eos_token_id=eos, pad_token_id=pad,
                                decoder_start_token_id=model.config.decoder_start_token_id)
    prompt = torch.tensor([ids])
    with torch.no_grad(), plain_generation_defaults(model):
        output = model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=settings, logits_processor=processors)
    tokens = output[0, 1:].tolist()
    return answer(tokens[: next((n + 1 for n, t in enumerate(tokens) if t in eos), len(tokens))])

rows = []
for question in questions:
    ids = encoder.prompt_ids(question)
    rows.append({"promptIds": ids, "groundedIds": encoder.prompt_ids(question, context), "eos": eos, "positions": positions,
                 "greedy": answer(torch_greedy(model, ids, new_tokens, eos, pad)), "controlled": controlled(ids),
                 # The decoder's positions hold its start token and the answer: greedy until they are used up.
                 "untilFull": answer(torch_greedy(model, ids, positions - 1, eos, pad)) if positions else None})
print(json.dumps(rows))
`;

describe.each([
  { kind: 't5-wide', positions: null },
  { kind: 'bart-wide', positions: 128 },
])('an encoder-decoder export ($kind) in the seq2seq prompt format', ({ kind, positions }) => {
  const SYSTEM_PROMPT = 'Answer briefly.';
  const CONTEXT = [{ question: 'Where is my parcel?', answer: 'It ships within two days.' }];
  let seq2seqGenerator: Generator;
  let seq2seqReference: Array<
    Reference & { groundedIds: number[]; controlled: number[]; untilFull: number[] | null; positions: number | null }
  >;

  beforeAll(async () => {
    runPython(['-m', 'engine.tests.tiny_models', kind, join(dir, kind)]);
    const exportArgs = ['--model', join(dir, kind), '--output', join(dir, `onnx-${kind}`), '--system-prompt', SYSTEM_PROMPT];
    runPython(['-m', 'engine', 'export', ...exportArgs, '--parity-prompts', '1']);
    const referenceArgs = [join(dir, kind), SYSTEM_PROMPT, JSON.stringify(QUESTIONS), JSON.stringify(CONTEXT), String(NEW_TOKENS)];
    const lines = runPython(['-c', SEQ2SEQ_REFERENCE, ...referenceArgs])
      .trim()
      .split('\n');
    seq2seqReference = JSON.parse(lines[lines.length - 1]!) as typeof seq2seqReference;
    seq2seqGenerator = await loadGenerator(join(dir, `onnx-${kind}`));
  }, 300_000);

  afterAll(async () => {
    await seq2seqGenerator?.close();
  });

  it("encodes the encoder's prompt as engine/prompts.py does: system prompt, grounded question, the tokenizer's special tokens", () => {
    const { tokenizer } = seq2seqGenerator;
    expect(tokenizer.promptFormat.kind).toBe('seq2seq');
    expect(tokenizer.eosIds).toEqual(seq2seqReference[0]!.eos);
    QUESTIONS.forEach((question, n) => {
      const ids = tokenizer.encodePrompt(question);
      expect(ids, question).toEqual(seq2seqReference[n]!.promptIds);
      expect(ids.at(-1)).toBe(tokenizer.eosIds[0]); // T5 and BART alike end the encoder's text with </s>
      expect(tokenizer.encodePrompt([{ role: 'user', content: question }])).toEqual(ids);
      expect(tokenizer.encodePrompt(groundedQuestion(tokenizer.promptFormat, question, CONTEXT))).toEqual(seq2seqReference[n]!.groundedIds);
    });
  });

  it('greedy tokens equal PyTorch, one question at a time and batched with right padding', async () => {
    expect(new Set(seq2seqReference.flatMap((row) => row.greedy)).size).toBeGreaterThan(3); // not degenerate
    expect(new Set(seq2seqReference.map((row) => row.promptIds.length)).size).toBeGreaterThan(1); // the batch is padded
    for (const [n, question] of QUESTIONS.entries()) {
      const [result] = await seq2seqGenerator.generate([question], { maxNewTokens: NEW_TOKENS });
      expect(result!.tokens, question).toEqual(seq2seqReference[n]!.greedy);
    }
    const batched = await seq2seqGenerator.generate(QUESTIONS, { maxNewTokens: NEW_TOKENS, greedy: true });
    expect(batched.map((result) => result.tokens)).toEqual(seq2seqReference.map((row) => row.greedy));
    expect(batched.map((result) => result.text)).toEqual(seq2seqReference.map((row) => seq2seqGenerator.tokenizer.decode(row.greedy)));
  });

  it('the repetition controls and the end rule give the tokens PyTorch gives with the same settings', async () => {
    const options = { maxNewTokens: NEW_TOKENS, repetitionPenalty: 1.3, noRepeatNgramSize: 3, endProbability: 0.5 };
    const batched = await seq2seqGenerator.generate(QUESTIONS, options);
    expect(batched.map((result) => result.tokens)).toEqual(seq2seqReference.map((row) => row.controlled));
    expect(seq2seqReference.map((row) => row.controlled)).not.toEqual(seq2seqReference.map((row) => row.greedy)); // not vacuous
  });

  it('streams the tokens generate makes, greedy and with seeded sampling; chunks add up to the text', async () => {
    const sampled = { maxNewTokens: NEW_TOKENS, greedy: false, temperature: 1, topP: 0.9, seed: 7 };
    for (const options of [{ maxNewTokens: NEW_TOKENS }, sampled]) {
      for (const question of QUESTIONS) {
        const [batch] = await seq2seqGenerator.generate([question], options);
        const { chunks, generation } = await collect(seq2seqGenerator.stream(question, options));
        expect(generation).toEqual(batch);
        const eos = generation.finishReason === 'stop' ? [chunks[chunks.length - 1]!.token] : [];
        expect(chunks.map((chunk) => chunk.token)).toEqual([...generation.tokens, ...eos]);
        expect(chunks.map((chunk) => chunk.text).join('')).toBe(generation.text);
      }
    }
  });

  it('sampling is reproducible with a seed, changes with another, and differs from greedy', async () => {
    const options = { maxNewTokens: NEW_TOKENS, greedy: false, temperature: 1, topP: 0.9 };
    const first = await seq2seqGenerator.generate(QUESTIONS, { ...options, seed: 7 });
    const again = await seq2seqGenerator.generate(QUESTIONS, { ...options, seed: 7 });
    const other = await seq2seqGenerator.generate(QUESTIONS, { ...options, seed: 8 });
    expect(again).toEqual(first);
    expect(other.map((r) => r.tokens)).not.toEqual(first.map((r) => r.tokens));
    expect(first.map((r) => r.tokens)).not.toEqual(seq2seqReference.map((row) => row.greedy));
  });

  it('a stop string ends an answer; aborting a stream stops its decode steps', async () => {
    const greedy = seq2seqReference[0]!.greedy;
    const stop = seq2seqGenerator.tokenizer.decode(greedy.slice(2, 4));
    const [stopped] = await seq2seqGenerator.generate([QUESTIONS[0]!], { maxNewTokens: NEW_TOKENS, stop: [stop] });
    expect(stopped!.finishReason).toBe('stop-string');
    expect(stopped!.text).not.toContain(stop);

    const runs = countRuns();
    const controller = new AbortController();
    const stream = seq2seqGenerator.stream(QUESTIONS[0]!, { maxNewTokens: NEW_TOKENS, signal: controller.signal });
    const { chunks, generation } = await collect(stream, (count) => count === 3 && controller.abort());
    expect(runs()).toBe(1 + 3); // the encoder once, then a decoder run per token
    expect(chunks).toHaveLength(3);
    expect(generation.finishReason).toBe('cancelled');
    expect(generation.tokens).toEqual(greedy.slice(0, 3));
  });

  it("positions: a prompt must fit the encoder's, an answer the decoder's (BART); T5's have no end", async () => {
    expect(seq2seqGenerator.maxPositions).toBe(positions);
    const longPrompt = 'How do I reset it? '.repeat(40);
    if (positions === null) {
      const [result] = await seq2seqGenerator.generate([longPrompt], { maxNewTokens: 2 });
      expect(seq2seqGenerator.tokenizer.encodePrompt(longPrompt).length).toBeGreaterThan(128);
      expect(result!.tokens).toHaveLength(2);
      return;
    }
    await expect(seq2seqGenerator.generate([longPrompt], { maxNewTokens: 4 })).rejects.toThrow(
      new RegExp(`more than the ${positions} positions this model has`),
    );
    const results = await seq2seqGenerator.generate(QUESTIONS, { maxNewTokens: 1000 });
    expect(results.map((result) => result.tokens)).toEqual(seq2seqReference.map((row) => row.untilFull));
    const full = results.filter((result) => result.tokens.length === positions - 1);
    expect(full.length).toBeGreaterThan(0);
    for (const result of full) expect(result.finishReason).toBe('length');
  });
});
