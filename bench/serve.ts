/**
 * Chat server benchmark: time to first token and tokens per second through `tuneline serve`'s API
 * (serve/server.ts, in this process, on a free port) with 1, 4 and 16 clients streaming at once, each
 * client an `openai` npm client asking its questions one after another. The single client's figures
 * are the baseline; every other row prints its ratio to them.
 *
 *   npm run bench:serve                       # the default model, exported once to .tuneline/bench/base-onnx
 *   npm run bench:serve -- --model DIR        # another export, e.g. a run's `onnx` folder
 *   npm run bench:serve -- --max-tokens 32 --requests 32 --max-concurrent 4
 *
 * Greedy answers of at most `--max-tokens` tokens to clean questions of the seeded sample data; each
 * concurrency level sends `--requests` requests in all (the clients share them), after one warm-up
 * request. Prints a Markdown table and writes bench/results/serve.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { loadExportModel } from '../cli/chat-model';
import { createChatServer } from '../serve/server';
import { DEFAULT_EXPORT, ensureBaseExport, sampleQuestions } from './models';
import { percentile } from './stats';

const CONCURRENCY = [1, 4, 16];

interface RequestTiming {
  firstTokenSeconds: number;
  seconds: number;
  tokens: number;
}

async function timedRequest(api: OpenAI, model: string, question: string, maxTokens: number): Promise<RequestTiming> {
  const started = performance.now();
  const stream = await api.chat.completions.create({
    model,
    messages: [{ role: 'user', content: question }],
    max_tokens: maxTokens,
    stream: true,
    stream_options: { include_usage: true },
  });
  let first: number | undefined;
  let tokens = 0;
  for await (const chunk of stream) {
    if (first === undefined && chunk.choices[0]?.delta.content) first = performance.now();
    if (chunk.usage) tokens = chunk.usage.completion_tokens;
  }
  const ended = performance.now();
  return { firstTokenSeconds: ((first ?? ended) - started) / 1000, seconds: (ended - started) / 1000, tokens };
}

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      'max-tokens': { type: 'string', default: '48' },
      requests: { type: 'string', default: '16' },
      'max-concurrent': { type: 'string', default: '4' },
    },
  });
  const maxTokens = Number(values['max-tokens']);
  const requests = Number(values.requests);
  const maxConcurrent = Number(values['max-concurrent']);
  const exportDir = resolve(values.model ?? DEFAULT_EXPORT);
  if (!values.model) ensureBaseExport(exportDir);

  const server = await createChatServer(await loadExportModel(exportDir), { limits: { rateLimit: null, maxConcurrent } });
  const address = await server.app.listen({ host: '127.0.0.1', port: 0 });
  const questions = sampleQuestions(requests);
  const model = (await new OpenAI({ baseURL: `${address}/v1`, apiKey: 'bench' }).models.list()).data[0]!.id;
  const started = performance.now();

  const levels = [];
  for (const clients of CONCURRENCY) {
    const apis = Array.from({ length: clients }, () => new OpenAI({ baseURL: `${address}/v1`, apiKey: 'bench', maxRetries: 0 }));
    await timedRequest(apis[0]!, model, questions[0]!, 8); // warm-up
    const queue = [...questions];
    const timings: RequestTiming[] = [];
    const wallStart = performance.now();
    await Promise.all(
      apis.map(async (api) => {
        for (let question = queue.shift(); question !== undefined; question = queue.shift())
          timings.push(await timedRequest(api, model, question, maxTokens));
      }),
    );
    const wall = (performance.now() - wallStart) / 1000;
    const tokens = timings.reduce((sum, t) => sum + t.tokens, 0);
    levels.push({
      clients,
      requests: timings.length,
      p50FirstTokenSeconds: percentile(
        timings.map((t) => t.firstTokenSeconds),
        50,
      ),
      p95FirstTokenSeconds: percentile(
        timings.map((t) => t.firstTokenSeconds),
        95,
      ),
      // Per stream, after its first token: how fast one user sees the answer grow.
      streamTokensPerSecond: percentile(
        timings.map((t) => (t.tokens - 1) / Math.max(t.seconds - t.firstTokenSeconds, 1e-3)),
        50,
      ),
      totalTokensPerSecond: tokens / wall,
      wallSeconds: wall,
    });
    console.error(`${clients} client(s): ${timings.length} requests, ${tokens} tokens in ${wall.toFixed(1)} s`);
  }
  await server.shutdown(5_000);

  const base = levels[0]!;
  const fixed = (v: number, digits = 2) => v.toFixed(digits);
  console.log(
    `\nChat server, ${model}, greedy, at most ${maxTokens} new tokens, ${requests} requests per level, ${maxConcurrent} generating at once, ${os.availableParallelism()} CPUs\n`,
  );
  console.log('| clients | p50 first token (s) | ratio | p95 first token (s) | stream tokens/s (p50) | ratio | total tokens/s | ratio |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const l of levels)
    console.log(
      `| ${l.clients} | ${fixed(l.p50FirstTokenSeconds)} | ${fixed(l.p50FirstTokenSeconds / base.p50FirstTokenSeconds)}x | ${fixed(l.p95FirstTokenSeconds)} | ` +
        `${fixed(l.streamTokensPerSecond, 1)} | ${fixed(l.streamTokensPerSecond / base.streamTokensPerSecond)}x | ` +
        `${fixed(l.totalTokensPerSecond, 1)} | ${fixed(l.totalTokensPerSecond / base.totalTokensPerSecond)}x |`,
    );
  const resultsDir = join(import.meta.dirname, 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(
    join(resultsDir, 'serve.json'),
    JSON.stringify(
      {
        model,
        exportDir,
        settings: { maxTokens, requests, maxConcurrent, cpus: os.availableParallelism() },
        baseline: '1 client',
        levels: levels.map((l) => ({
          ...l,
          ratios: {
            p50FirstTokenSeconds: l.p50FirstTokenSeconds / base.p50FirstTokenSeconds,
            streamTokensPerSecond: l.streamTokensPerSecond / base.streamTokensPerSecond,
            totalTokensPerSecond: l.totalTokensPerSecond / base.totalTokensPerSecond,
          },
        })),
        wallSeconds: (performance.now() - started) / 1000,
      },
      null,
      2,
    ),
  );
  console.error('written to bench/results/serve.json');
}

await main();
