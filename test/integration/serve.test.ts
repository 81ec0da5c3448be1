/**
 * The chat server through the `openai` npm client, on a real export of a tiny model: answers equal the
 * generator's, streamed or whole; limits, keys and the rate limit give OpenAI's errors with the right
 * status; 16 concurrent streams all finish; a swapped model serves the next request while an open
 * stream ends on the old one; shutdown lets an open stream finish.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import OpenAI from 'openai';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadExportModel } from '../../cli/chat-model';
import { FeedbackStore } from '../../serve/feedback';
import { loadGenerator, type Generator } from '../../serve/generation';
import { groundedQuestion } from '../../serve/grounding';
import { createChatServer, type ChatModel, type ChatServer, type ServerOptions } from '../../serve/server';
import { projectRoot } from './harness';

let dir: string;
let exportDir: string;
let generator: Generator;
const servers: ChatServer[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tuneline-serve-'));
  const python = join(projectRoot, '.venv', 'bin', 'python');
  const run = (args: string[]) => execFileSync(python, args, { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  run(['-m', 'engine.tests.tiny_models', 'wide', join(dir, 'tiny')]);
  exportDir = join(dir, 'onnx');
  run(['-m', 'engine', 'export', '--model', join(dir, 'tiny'), '--output', exportDir, '--parity-prompts', '1']);
  generator = await loadGenerator(exportDir);
}, 300_000);

afterAll(async () => {
  for (const s of servers) await s.shutdown(1000).catch(() => undefined);
  await generator?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A server on a free port with the tiny export, and an `openai` client for it (no retries: errors show as they are). */
async function serve(options: ServerOptions = {}, model?: ChatModel) {
  const server = await createChatServer(model ?? (await loadExportModel(exportDir)), options);
  servers.push(server);
  const address = await server.app.listen({ host: '127.0.0.1', port: 0 });
  const client = (apiKey = 'none') => new OpenAI({ baseURL: `${address}/v1`, apiKey, maxRetries: 0 });
  return { server, address, client };
}

const QUESTION = 'How do I reset my router?';
const MODEL = 'onnx'; // the export folder's name
const CHROMIUM = '/usr/bin/chromium';

describe('the OpenAI-compatible chat API', () => {
  it('answers as the generator does, whole and streamed, with usage counts', async () => {
    const { client } = await serve();
    const api = client();
    const [greedy] = await generator.generate([QUESTION], { maxNewTokens: 12 });
    const whole = await api.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: QUESTION }], max_tokens: 12 });
    expect(whole.choices[0]!.message.content).toBe(greedy!.text);
    expect(whole.choices[0]!.finish_reason).toBe(greedy!.finishReason === 'length' ? 'length' : 'stop');
    const promptTokens = generator.tokenizer.encodePrompt(QUESTION).length;
    expect(whole.usage).toEqual({
      prompt_tokens: promptTokens,
      completion_tokens: greedy!.tokens.length,
      total_tokens: promptTokens + greedy!.tokens.length,
    });

    // Sampled with a seed, streamed: the same text as the generator with that seed.
    const [sampled] = await generator.generate([QUESTION], { maxNewTokens: 16, greedy: false, temperature: 0.8, topP: 0.9, seed: 11 });
    const stream = await api.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: QUESTION }],
      max_tokens: 16,
      temperature: 0.8,
      top_p: 0.9,
      seed: 11,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined;
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe(sampled!.text);
    expect(finish).toBe(sampled!.finishReason === 'length' ? 'length' : 'stop');
    expect(usage?.completion_tokens).toBe(sampled!.tokens.length);
    expect(sampled!.text).not.toBe(greedy!.text);

    const models = await api.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
  });

  it('a grounded model gets the known pairs in the prompt and names them in the answer', async () => {
    const base = await loadExportModel(exportDir);
    const pairs = [{ id: 'row-7', question: 'How do I restart the router?', answer: 'Hold reset for 10 seconds.', similarity: 0.93 }];
    const { client } = await serve({}, { ...base, knownPairs: async () => pairs });
    const answer = (await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: QUESTION }],
      max_tokens: 8,
    })) as OpenAI.ChatCompletion & {
      tuneline: { known_pairs: Array<{ id: string }> };
    };
    expect(answer.tuneline.known_pairs.map((p) => p.id)).toEqual(['row-7']);
    // What the model was asked: the question with its pairs, as the evaluation renders it.
    const [expected] = await generator.generate([groundedQuestion(generator.tokenizer.promptFormat, QUESTION, pairs)], { maxNewTokens: 8 });
    const [plain] = await generator.generate([QUESTION], { maxNewTokens: 8 });
    expect(answer.choices[0]!.message.content).toBe(expected!.text);
    expect(expected!.text).not.toBe(plain!.text);
  });

  it('rejects what breaks its limits, a wrong key and an unknown model with OpenAI errors and the right status', async () => {
    const { client, address } = await serve({
      apiKeys: ['sk-right'],
      limits: { maxMessages: 3, maxMessageChars: 100, maxNewTokens: 32, maxBodyBytes: 4096 },
    });
    const messages = [{ role: 'user' as const, content: QUESTION }];
    await expect(client('sk-wrong').chat.completions.create({ model: MODEL, messages })).rejects.toMatchObject({
      status: 401,
      code: 'invalid_api_key',
    });
    await expect(client(undefined as unknown as string).models.list()).rejects.toMatchObject({ status: 401 });
    const api = client('sk-right');
    await expect(api.chat.completions.create({ model: MODEL, messages, max_tokens: 33 })).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining('max_tokens: 33; at most 32'),
    });
    await expect(
      api.chat.completions.create({ model: MODEL, messages: [...messages, { role: 'assistant', content: 'x' }, ...messages, ...messages] }),
    ).rejects.toMatchObject({ status: 400, message: expect.stringContaining('at most 3') });
    await expect(
      api.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(101) }] }),
    ).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining('messages.0.content: 101 characters; at most 100'),
    });
    await expect(api.chat.completions.create({ model: MODEL, messages: [{ role: 'assistant', content: 'hi' }] })).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining('must end with a user message'),
    });
    await expect(api.chat.completions.create({ model: 'gpt-4o', messages })).rejects.toMatchObject({
      status: 404,
      code: 'model_not_found',
    });
    // A body over the limit: 413 with a readable body, before any parsing.
    const big = await fetch(`${address}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer sk-right' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(5000) }] }),
    });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'request_too_large' } });
    const health = await fetch(`${address}/healthz`);
    expect(await health.json()).toEqual({ status: 'ok' });
    expect((await fetch(`${address}/readyz`)).status).toBe(200);
  });

  it("refuses a prompt longer than the model's positions with a 400 that says so", async () => {
    const model = await loadExportModel(exportDir);
    // The tiny Llama has 512 positions; a model of 8 (as a tiny GPT-2 has 128) makes a short question too long.
    const { client } = await serve({}, { ...model, generator: { ...model.generator, maxPositions: 8 } });
    await expect(client().chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: QUESTION }] })).rejects.toMatchObject(
      {
        status: 400,
        code: 'context_length_exceeded',
        message: expect.stringMatching(/messages: the prompt is \d+ tokens, more than the 8 positions this model has/),
      },
    );
  });

  it('limits each client to its rate, with a 429 that says when to retry', async () => {
    const { client } = await serve({ apiKeys: ['a', 'b'], limits: { rateLimit: { max: 2, windowMs: 60_000 } } });
    const ask = (key: string) =>
      client(key).chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
    await ask('a');
    await ask('a');
    await expect(ask('a')).rejects.toMatchObject({
      status: 429,
      code: 'rate_limit_exceeded',
      message: expect.stringMatching(/retry in \d+ s/),
    });
    await expect(ask('b')).resolves.toBeDefined(); // another client has its own budget
  });

  it('keeps every answer with its conversation; ratings land in SQLite and export as dataset rows', async () => {
    const store = new FeedbackStore(join(dir, 'feedback.sqlite'));
    const { client, address } = await serve({ feedback: store });
    const api = client();
    const ask = (content: string) => api.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content }], max_tokens: 6 });
    const [good, fixed, bad] = [await ask('Is it waterproof?'), await ask('Where is the reset button?'), await ask('Does it ship abroad?')];
    const rate = (body: object) =>
      fetch(`${address}/v1/feedback`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    expect((await rate({ completion_id: good.id, rating: 'up' })).status).toBe(201);
    expect(
      (await rate({ completion_id: fixed.id, rating: 'down', comment: 'wrong place', correction: 'On the back, under the cover.' })).status,
    ).toBe(201);
    expect((await rate({ completion_id: bad.id, rating: 'down' })).status).toBe(201);
    const unknown = await rate({ completion_id: 'chatcmpl-nope', rating: 'up' });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { code: 'unknown_completion', param: 'completion_id' } });
    const invalid = await rate({ completion_id: good.id, rating: 'meh' });
    expect(invalid.status).toBe(400);
    expect(((await invalid.json()) as { error: { message: string } }).error.message).toContain('rating');

    const out = (name: string, ...flags: string[]) => {
      const file = join(dir, name);
      execFileSync(
        process.execPath,
        [join(projectRoot, 'bin', 'tuneline.mjs'), 'feedback', 'export', '--db', store.file, '-o', file, ...flags],
        {
          cwd: projectRoot,
          stdio: 'pipe',
        },
      );
      return readFileSync(file, 'utf8');
    };
    const csv = parse(out('feedback.csv'), { columns: true }) as Array<Record<string, string>>;
    expect(csv.map((r) => [r.id, r.question, r.answer, r.rating, r.rejected])).toEqual([
      [good.id, 'Is it waterproof?', good.choices[0]!.message.content, 'up', 'false'],
      [fixed.id, 'Where is the reset button?', 'On the back, under the cover.', 'down', 'false'],
    ]);
    expect(csv[1]).toMatchObject({ modelAnswer: fixed.choices[0]!.message.content, comment: 'wrong place', model: MODEL });
    const all = out('feedback.jsonl', '--include-rejected')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { id: string; rejected: boolean; answer: string });
    expect(all.map((r) => [r.id, r.rejected, r.answer])).toEqual([
      [good.id, false, good.choices[0]!.message.content],
      [fixed.id, false, 'On the back, under the cover.'],
      [bad.id, true, ''],
    ]);
    // A server without a store says so.
    const { address: off } = await serve();
    expect(
      (await fetch(`${off}/v1/feedback`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })).status,
    ).toBe(503);
  });

  it('serves 16 concurrent streaming clients with no failed request', async () => {
    const { client } = await serve({ limits: { maxConcurrent: 4, rateLimit: null } });
    const texts = await Promise.all(
      Array.from({ length: 16 }, async (_, n) => {
        const stream = await client().chat.completions.create({
          model: MODEL,
          messages: [{ role: 'user', content: `${QUESTION} (${n})` }],
          max_tokens: 8,
          stream: true,
        });
        let text = '';
        let finished = false;
        for await (const chunk of stream) {
          text += chunk.choices[0]?.delta.content ?? '';
          finished ||= chunk.choices[0]?.finish_reason != null;
        }
        expect(finished).toBe(true);
        return text;
      }),
    );
    expect(texts).toHaveLength(16);
  });

  it('a swapped model serves the next request while an open stream ends on the old one; shutdown lets open streams finish', async () => {
    const { server, client } = await serve();
    const api = client();
    const open = await api.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: QUESTION }],
      max_tokens: 24,
      stream: true,
    });
    const reading = (async () => {
      let n = 0;
      for await (const chunk of open) n += chunk.choices[0]?.delta.content ? 1 : 0;
      return n;
    })();
    const next = await loadExportModel(exportDir);
    await server.swap({ ...next, id: 'next-model' });
    expect((await api.models.list()).data.map((m) => m.id)).toEqual(['next-model']);
    const again = await api.chat.completions.create({ model: 'next-model', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
    expect(again.model).toBe('next-model');
    expect(await reading).toBeGreaterThan(0); // the stream on the old model ended normally

    const last = await api.chat.completions.create({
      model: 'next-model',
      messages: [{ role: 'user', content: QUESTION }],
      max_tokens: 24,
      stream: true,
    });
    const finishing = (async () => {
      let finish: string | null = null;
      for await (const chunk of last) finish = chunk.choices[0]?.finish_reason ?? finish;
      return finish;
    })();
    await new Promise((r) => setTimeout(r, 50));
    await server.shutdown(30_000);
    expect(await finishing).not.toBeNull();
    await expect(api.models.list()).rejects.toBeDefined();
  });
});

describe('the web chat page, in headless Chromium', () => {
  it('chats with the model as the API answers, and a rating with a correction lands in SQLite', { timeout: 120_000 }, async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (scripts/test.sh does)`);
    const store = new FeedbackStore(join(dir, 'page-feedback.sqlite'));
    const { address } = await serve({ feedback: store });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-background-networking'],
    });
    try {
      const page = await browser.newPage();
      const failures: string[] = [];
      page.on('pageerror', (err) => failures.push(err.message));
      page.on('console', (m) => m.type() === 'error' && failures.push(m.text()));
      await page.goto(address);
      await expect.poll(() => page.textContent('#model')).toBe(`model ${MODEL}`);
      await page.fill('#question', QUESTION);
      await page.click('#send');
      await page.waitForSelector('.rate-up');
      const [expected] = await generator.generate([QUESTION], { maxNewTokens: 256 });
      expect(await page.textContent('.turn.assistant')).toBe(expected!.text);
      expect(await page.textContent('.turn.user')).toBe(QUESTION);
      const completionId = await page.getAttribute('.turn.assistant', 'data-completion-id');

      await page.click('.rate-down');
      await page.fill('.correction', 'Hold the reset button for ten seconds.');
      await page.fill('.comment', 'too vague');
      await page.click('.rate-save');
      await page.waitForSelector('.feedback-sent');
      expect(store.ratings()).toEqual([
        expect.objectContaining({
          answer_id: completionId,
          rating: 'down',
          comment: 'too vague',
          correction: 'Hold the reset button for ten seconds.',
        }),
      ]);
      // A second question goes with the conversation so far.
      await page.fill('#question', 'And then?');
      await page.click('#send');
      // The first answer's buttons became a thank-you; the second answer has its own once it is complete.
      await expect.poll(() => page.locator('.rate-up').count(), { timeout: 60_000 }).toBe(1);
      expect(await page.locator('.turn.assistant').count()).toBe(2);
      expect(failures).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});

describe('an encoder-decoder model (a tiny T5)', () => {
  it('is served as a decoder-only one is: answers equal the generator, whole and streamed, conversations included', async () => {
    const python = join(projectRoot, '.venv', 'bin', 'python');
    const run = (args: string[]) => execFileSync(python, args, { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    run(['-m', 'engine.tests.tiny_models', 't5-wide', join(dir, 't5')]);
    const t5Export = join(dir, 't5-onnx');
    run(['-m', 'engine', 'export', '--model', join(dir, 't5'), '--output', t5Export, '--parity-prompts', '1']);
    const model = await loadExportModel(t5Export);
    const { client } = await serve({}, model);
    const api = client();
    const t5 = model.generator;

    const [greedy] = await t5.generate([QUESTION], { maxNewTokens: 12 });
    const whole = await api.chat.completions.create({ model: 't5-onnx', messages: [{ role: 'user', content: QUESTION }], max_tokens: 12 });
    expect(whole.choices[0]!.message.content).toBe(greedy!.text);
    expect(whole.usage!.prompt_tokens).toBe(t5.tokenizer.encodePrompt(QUESTION).length);
    expect(whole.usage!.completion_tokens).toBe(greedy!.tokens.length);

    const stream = await api.chat.completions.create({
      model: 't5-onnx',
      messages: [{ role: 'user', content: QUESTION }],
      max_tokens: 12,
      stream: true,
    });
    let streamed = '';
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta.content ?? '';
    expect(streamed).toBe(greedy!.text);

    // A conversation reaches the encoder as lines of text (serve/prompts.ts), and is answered from it.
    const conversation = [
      { role: 'user' as const, content: QUESTION },
      { role: 'assistant' as const, content: 'Hold the reset button.' },
      { role: 'user' as const, content: 'For how long?' },
    ];
    const [followUp] = await t5.generate([conversation], { maxNewTokens: 12 });
    const answer = await api.chat.completions.create({ model: 't5-onnx', messages: conversation, max_tokens: 12 });
    expect(answer.choices[0]!.message.content).toBe(followUp!.text);
    expect(followUp!.tokens).not.toEqual(greedy!.tokens);
  });
});
