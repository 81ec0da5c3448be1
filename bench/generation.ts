/**
 * Generation benchmark: our onnxruntime-node loop (serve/generation.ts `generate`, the batch entry point;
 * `stream` runs the same decode loop one conversation at a time) against PyTorch transformers'
 * `model.generate()` on the same model, prompts and settings: greedy, the same max new tokens, the same
 * batch sizes, a KV cache on both sides, the same number of intra-op threads.
 *
 *   npm run bench:generation                     # base model, exported once to .tuneline/bench/base-onnx
 *   npm run bench:generation -- --model DIR      # another export, e.g. a trained one
 *
 * Prints a Markdown table (throughput in generated tokens per second, p50 seconds per batch, their
 * ratios, how many rows got identical greedy tokens) and writes bench/results/generation.json.
 *
 * Questions are clean rows of the bundled synthetic sample data (seeded); each batch size runs on the
 * first max(8, 2 x batch size) of them (batch 1: 8 questions, batch 8: 16). Per batch size each side
 * first runs one warm-up batch, not counted; then the two sides take turns, batch by batch, so other
 * work on the machine slows both alike. Generated tokens are counted alike on both sides: up to and
 * excluding the end-of-turn token. An export folder has no PyTorch weights, so the PyTorch side
 * (bench/generate_torch.py, a worker process) loads the source folder the export's manifest names.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { INTRA_OP_THREADS, loadGenerator } from '../serve/generation';
import { DEFAULT_EXPORT, SAMPLE_SEED, ensureBaseExport, sampleQuestions } from './models';

const root = join(import.meta.dirname, '..');
const python = join(root, '.venv', 'bin', 'python');
const WARMUP_NEW_TOKENS = 8;
// Rows per batch size: at least 2 batches (so p50 is over more than one) and at least 8 rows. Batch 1
// then takes the first 8 questions, not all 16: on 2 cores that keeps the whole run near 3 minutes.
const MIN_ROWS = 8;
const rowsFor = (batchSize: number, questions: number) => Math.min(questions, Math.max(MIN_ROWS, 2 * batchSize));

/** One timed batch: wall and CPU seconds of the generate call, then per question its generated ids, text and prompt ids. */
interface Batch {
  seconds: number;
  cpuSeconds: number;
  tokens: number[][];
  texts: string[];
  promptIds: number[][];
}

interface Side {
  name: string;
  loadedFrom: string;
  threads: number;
  loadSeconds: number;
  versions: Record<string, string>;
  generate(questions: string[], maxNewTokens: number): Promise<Batch>;
  close(): Promise<void>;
}

/** One side at one batch size, over the first `rowsFor(batchSize)` questions. */
interface Run {
  batchSize: number;
  batchSeconds: number[];
  p50BatchSeconds: number;
  generatedTokens: number;
  tokensPerSecond: number;
  /** CPU seconds per wall second while generating: near the thread count unless other work took the cores. */
  coresBusy: number;
  tokens: number[][];
  texts: string[];
  promptIds: number[][];
}

function readOptions() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      questions: { type: 'string', default: '16' },
      'batch-sizes': { type: 'string', default: '1,8' },
      'max-new-tokens': { type: 'string', default: '48' },
    },
  });
  const count = Number(values.questions);
  const batchSizes = values['batch-sizes'].split(',').map(Number);
  const maxNewTokens = Number(values['max-new-tokens']);
  const problems: string[] = [];
  if (!Number.isInteger(count) || count < 1) problems.push(`--questions ${values.questions}: must be a whole number >= 1`);
  if (!batchSizes.every((size) => Number.isInteger(size) && size >= 1))
    problems.push(`--batch-sizes ${values['batch-sizes']}: must be whole numbers >= 1, comma-separated`);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) problems.push(`--max-new-tokens ${values['max-new-tokens']}: must be >= 1`);
  const exportDir = resolve(values.model ?? DEFAULT_EXPORT);
  if (values.model !== undefined && !existsSync(join(exportDir, 'export.json')))
    problems.push(`--model ${exportDir}: has no export.json; pass a folder written by \`python -m engine export\``);
  if (problems.length > 0) {
    console.error(problems.join('\n'));
    process.exit(2);
  }
  return { exportDir, count, batchSizes, maxNewTokens, isDefaultExport: values.model === undefined };
}

async function onnxSide(exportDir: string): Promise<Side> {
  const started = performance.now();
  const generator = await loadGenerator(exportDir);
  return {
    name: 'onnxruntime-node',
    loadedFrom: exportDir,
    threads: INTRA_OP_THREADS,
    loadSeconds: (performance.now() - started) / 1000,
    versions: { 'onnxruntime-node': ort.env.versions.node ?? 'unknown' },
    async generate(questions, maxNewTokens) {
      const [began, beganCpu] = [performance.now(), process.cpuUsage()];
      const rows = await generator.generate(questions, { maxNewTokens, greedy: true });
      const seconds = (performance.now() - began) / 1000;
      const cpu = process.cpuUsage(beganCpu);
      return {
        seconds,
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        tokens: rows.map((row) => row.tokens),
        texts: rows.map((row) => row.text),
        promptIds: questions.map((question) => generator.tokenizer.encodePrompt(question)),
      };
    },
    close: () => generator.close(),
  };
}

/** bench/generate_torch.py as a worker: one JSON line per request, one per reply. */
async function torchSide(exportDir: string): Promise<Side> {
  const worker = spawn(python, [join(import.meta.dirname, 'generate_torch.py'), exportDir, String(INTRA_OP_THREADS)], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, HF_HUB_OFFLINE: '1' },
  });
  const replies = createInterface({ input: worker.stdout })[Symbol.asyncIterator]();
  const nextReply = async () => {
    const { value, done } = await replies.next();
    if (done) throw new Error(`bench/generate_torch.py stopped (exit ${worker.exitCode}); see its output above`);
    return JSON.parse(value) as Record<string, unknown>;
  };
  const ready = (await nextReply()) as Omit<Side, 'name' | 'generate' | 'close'>;
  return {
    ...ready,
    name: 'PyTorch',
    async generate(questions, maxNewTokens) {
      worker.stdin.write(`${JSON.stringify({ questions, maxNewTokens })}\n`);
      return (await nextReply()) as unknown as Batch;
    },
    async close() {
      worker.stdin.end();
      if (worker.exitCode === null) await new Promise((done) => worker.once('exit', done));
    },
  };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

/** Per batch size: a warm-up batch per side, then the sides take turns on each batch of questions. */
async function measure(sides: Side[], allQuestions: string[], batchSizes: number[], maxNewTokens: number): Promise<Run[][]> {
  const runs: Run[][] = sides.map(() => []);
  for (const batchSize of batchSizes) {
    const questions = allQuestions.slice(0, rowsFor(batchSize, allQuestions.length));
    for (const side of sides) await side.generate(questions.slice(0, batchSize), WARMUP_NEW_TOKENS);
    const batches: Batch[][] = sides.map(() => []);
    for (let start = 0; start < questions.length; start += batchSize) {
      for (const [n, side] of sides.entries())
        batches[n]!.push(await side.generate(questions.slice(start, start + batchSize), maxNewTokens));
    }
    for (const [n, side] of sides.entries()) {
      const sideBatches = batches[n]!;
      const tokens = sideBatches.flatMap((batch) => batch.tokens);
      const batchSeconds = sideBatches.map((batch) => batch.seconds);
      const generatedTokens = tokens.reduce((sum, row) => sum + row.length, 0);
      const seconds = batchSeconds.reduce((sum, s) => sum + s, 0);
      console.error(`${side.name}: batch ${batchSize}: ${generatedTokens} tokens in ${seconds.toFixed(2)} s`);
      runs[n]!.push({
        batchSize,
        batchSeconds,
        p50BatchSeconds: median(batchSeconds),
        generatedTokens,
        tokensPerSecond: generatedTokens / seconds,
        coresBusy: sideBatches.reduce((sum, batch) => sum + batch.cpuSeconds, 0) / seconds,
        tokens,
        texts: sideBatches.flatMap((batch) => batch.texts),
        promptIds: sideBatches.flatMap((batch) => batch.promptIds),
      });
    }
  }
  return runs;
}

const sameIds = (a: number[], b: number[]) => a.length === b.length && a.every((id, n) => id === b[n]);

/** Rows whose greedy tokens are the same on both sides, and where each other row first differs. */
function compareTokens(onnx: Run, torch: Run) {
  const differing = onnx.tokens.flatMap((tokens, row) => {
    const other = torch.tokens[row]!;
    if (sameIds(tokens, other)) return [];
    const position = tokens.findIndex((token, n) => token !== other[n]);
    return [{ row, firstDifferentToken: position < 0 ? Math.min(tokens.length, other.length) : position }];
  });
  return { identicalRows: onnx.tokens.length - differing.length, rows: onnx.tokens.length, differing };
}

function markdownTable(header: string[], rows: string[][]): string {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => `| ${cells.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const options = readOptions();
  if (options.isDefaultExport) ensureBaseExport(options.exportDir);
  const questions = sampleQuestions(options.count);
  const started = performance.now();
  const onnx = await onnxSide(options.exportDir);
  const torch = await torchSide(options.exportDir);
  let onnxRuns: Run[], torchRuns: Run[];
  try {
    [onnxRuns, torchRuns] = (await measure([onnx, torch], questions, options.batchSizes, options.maxNewTokens)) as [Run[], Run[]];
  } finally {
    await Promise.all([onnx.close(), torch.close()]);
  }
  const wallSeconds = (performance.now() - started) / 1000;

  const widest = onnxRuns.reduce((best, run, n) => (run.promptIds.length > onnxRuns[best]!.promptIds.length ? n : best), 0);
  const promptsCompared = onnxRuns[widest]!.promptIds.length;
  const samePrompts = onnxRuns[widest]!.promptIds.filter((ids, n) => sameIds(ids, torchRuns[widest]!.promptIds[n]!)).length;
  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  const rows: string[][] = [];
  const comparisons = options.batchSizes.map((batchSize, n) => {
    const [o, t] = [onnxRuns[n]!, torchRuns[n]!];
    const match = compareTokens(o, t);
    const identical = `${match.identicalRows}/${match.rows}`;
    rows.push(
      [
        `batch ${batchSize}: tokens/s`,
        o.tokensPerSecond.toFixed(1),
        t.tokensPerSecond.toFixed(1),
        ratio(o.tokensPerSecond, t.tokensPerSecond),
      ],
      [
        `batch ${batchSize}: p50 s/batch`,
        o.p50BatchSeconds.toFixed(3),
        t.p50BatchSeconds.toFixed(3),
        ratio(o.p50BatchSeconds, t.p50BatchSeconds),
      ],
      [`batch ${batchSize}: generated tokens`, String(o.generatedTokens), String(t.generatedTokens), ''],
      [`batch ${batchSize}: rows, identical greedy tokens`, identical, identical, ''],
      [`batch ${batchSize}: cores busy (CPU s / wall s)`, o.coresBusy.toFixed(2), t.coresBusy.toFixed(2), ''],
    );
    return { batchSize, ...match };
  });
  rows.push(['model load, s (not in the figures)', onnx.loadSeconds.toFixed(1), torch.loadSeconds.toFixed(1), '']);

  console.log(`\nGeneration benchmark (this machine: ${os.cpus().length} CPUs)\n`);
  console.log(`- onnxruntime-node ${onnx.versions['onnxruntime-node']} loaded ${onnx.loadedFrom}`);
  console.log(`- PyTorch ${torch.versions.torch}, transformers ${torch.versions.transformers} loaded ${torch.loadedFrom}`);
  const rowsPerBatchSize = options.batchSizes.map((size) => `batch ${size} on the first ${rowsFor(size, questions.length)}`).join(', ');
  console.log(
    `- ${questions.length} sample questions (seed ${SAMPLE_SEED}): ${rowsPerBatchSize} (at least 2 batches and ${MIN_ROWS} rows)`,
  );
  console.log(
    `- greedy, at most ${options.maxNewTokens} new tokens, KV cache on both sides; prompt ids identical on both sides: ${samePrompts}/${promptsCompared}`,
  );
  console.log(
    `- intra-op threads: ${onnx.threads} onnxruntime-node (as serve/generation.ts sets them), ${torch.threads} PyTorch (set to match)`,
  );
  console.log(`- one warm-up batch per side and batch size, not counted; the sides take turns batch by batch`);
  console.log(`- tokens counted up to and excluding the end-of-turn token; ratio = onnxruntime-node / PyTorch`);
  console.log(
    `- cores busy well below the thread count means other work took cores: then the figures mislead (PyTorch slows down far more)`,
  );
  console.log(`- ${wallSeconds.toFixed(0)} s in all, model loads included\n`);
  console.log(markdownTable(['', 'onnxruntime-node', 'PyTorch', 'ratio'], rows));

  const resultsDir = join(import.meta.dirname, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const describe = (side: Side, runs: Run[]) => ({
    runtime: side.name,
    loadedFrom: side.loadedFrom,
    threads: side.threads,
    loadSeconds: side.loadSeconds,
    versions: side.versions,
    runs,
  });
  const result = {
    machine: {
      cpus: os.cpus().length,
      platform: `${os.platform()} ${os.release()}`,
    },
    settings: {
      questions,
      sampleSeed: SAMPLE_SEED,
      batchSizes: options.batchSizes,
      maxNewTokens: options.maxNewTokens,
      warmupNewTokens: WARMUP_NEW_TOKENS,
      rowsPerBatchSize: Object.fromEntries(options.batchSizes.map((size) => [size, rowsFor(size, questions.length)])),
    },
    samePromptIds: { identical: samePrompts, compared: promptsCompared },
    comparisons,
    ratios: options.batchSizes.map((batchSize, n) => ({
      batchSize,
      tokensPerSecond: onnxRuns[n]!.tokensPerSecond / torchRuns[n]!.tokensPerSecond,
      p50BatchSeconds: onnxRuns[n]!.p50BatchSeconds / torchRuns[n]!.p50BatchSeconds,
    })),
    onnx: describe(onnx, onnxRuns),
    torch: describe(torch, torchRuns),
    wallSeconds,
  };
  writeFileSync(join(resultsDir, 'generation.json'), JSON.stringify(result, null, 2));
  console.error('written to bench/results/generation.json');
}

await main();
