/**
 * Retrieval benchmark: embedding retrieval (serve/embedder.ts, all-MiniLM-L6-v2 in onnxruntime-node,
 * and serve/retriever.ts's exact dot-product scan) against the lexical baseline (character 3-gram
 * Jaccard, serve/lexical-index.ts) over the same rows.
 *
 *   npm run bench:retrieval                          # 10,000 and 100,000 sample rows (about 7 minutes on 2 idle cores)
 *   npm run bench:retrieval -- --sizes 2000 --queries 100
 *
 * Prints a Markdown table (each figure for both, side by side, with the ratio embedding / lexical) and
 * writes bench/results/retrieval.json.
 *
 * Quality. The bundled sample data (sample-data/generate.ts, seeded) asks about each (product, topic)
 * intent in several wordings: question templates ("How long does the battery last on the X?", "X
 * battery life?") with optional context sentences, greetings and typos. A row's intent comes from its
 * product and fact (planted copies take their source's); its template is the one whose text, product
 * filled in, the question contains. For a sample of intents with at least two templates, one template is
 * held out: one of its questions is the query, and every row of that intent with that template (or one
 * that cannot be told) is excluded from the search, so what can be found is only another wording of
 * the same intent. recall@k: the share of queries with a row of the query's intent among the k best.
 *
 * Speed. Each size is a fresh sample of that many rows (every row with a text question and answer). The
 * index build is embedding every question plus making the index (lexical: the inverted index).
 * Latency per query, over questions from another seed that the index does not hold, one at a time
 * after a few warm-ups: embedding = embed the one question + scan; lexical = the search. p50 and p95 in
 * milliseconds. The load average before and after says whether other work shared the CPUs.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { renderMarkdown, type Cell } from '../activities/report/document';
import { mulberry32 } from '../lib/seeded-random';
import { catalog, factsByType, type Topic } from '../sample-data/catalog';
import { generateLabelledSampleRecords, type RowLabel } from '../sample-data/generate';
import { questionTemplates } from '../sample-data/questions';
import { EMBEDDER_MANIFEST_FILE, loadEmbedder, type Embedder } from '../serve/embedder';
import { INTRA_OP_THREADS } from '../serve/generation';
import { EmbeddingIndex, LexicalIndex, type RetrievalRow } from '../serve/retriever';
import { percentile } from './stats';

const root = join(import.meta.dirname, '..');
const python = join(root, '.venv', 'bin', 'python');
const EXPORT_DIR = join(root, '.tuneline', 'bench', 'embedder-onnx');
const SAMPLE_SEED = 7;
const QUERY_SEED = 8; // latency queries: questions the index does not hold
const K = 5;
const WARMUP_QUERIES = 5;
const QUALITY_QUERIES = 500; // held-out wordings per size (fewer when fewer intents qualify)

/** A sample row with what the quality measure needs: its intent and question template (null: unknown). */
interface BenchRow extends RetrievalRow {
  intent: string | null;
  template: number | null;
  clean: boolean;
}

function readOptions() {
  const { values } = parseArgs({
    options: { sizes: { type: 'string', default: '10000,100000' }, queries: { type: 'string', default: '200' } },
  });
  const sizes = values.sizes.split(',').map(Number);
  const queries = Number(values.queries);
  const problems: string[] = [];
  if (!sizes.every((size) => Number.isInteger(size) && size >= 100))
    problems.push(`--sizes ${values.sizes}: whole numbers >= 100, comma-separated`);
  if (!Number.isInteger(queries) || queries < 10) problems.push(`--queries ${values.queries}: a whole number >= 10`);
  if (problems.length > 0) {
    console.error(problems.join('\n'));
    process.exit(2);
  }
  return { sizes, queries };
}

/** The embedder export, made once and reused (about 10 s). */
function ensureEmbedderExport(): void {
  if (existsSync(join(EXPORT_DIR, EMBEDDER_MANIFEST_FILE))) return;
  console.error(`exporting the embedder to ${EXPORT_DIR} (once)`);
  execFileSync(python, ['-m', 'engine', 'export-embedder', '--output', EXPORT_DIR], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
}

/** (product, question type, fact) -> topic, from the catalog the generator draws from. */
const topicOfFact = new Map<string, Topic>();
for (const product of catalog)
  for (const facts of Object.values(factsByType(product)))
    for (const fact of facts) topicOfFact.set(`${product.name}|${fact.type}|${fact.fact}`, fact.topic);

/** Which of the topic's templates the question was written from: the longest whose text it contains. */
function templateOf(question: string, product: string, topic: Topic): number | null {
  const text = question.toLowerCase();
  let best: number | null = null;
  let bestLength = 0;
  questionTemplates[topic].forEach((template, n) => {
    const core = template
      .replaceAll('{p}', product)
      .toLowerCase()
      .replace(/[?!.]+$/, '');
    if (core.length > bestLength && text.includes(core)) [best, bestLength] = [n, core.length];
  });
  return best;
}

/** Sample rows with a text question and answer, each with its intent and template where they can be told. */
function sampleRows(rows: number, seed: number): BenchRow[] {
  const { records, labels } = generateLabelledSampleRecords(rows, seed);
  const intentOf = (n: number): { intent: string; product: string; topic: Topic } | null => {
    const label: RowLabel = labels[n]!;
    if (label.copyOf !== undefined) return intentOf(label.copyOf); // a planted copy asks what its source asks
    const record = records[n]!;
    const topic = topicOfFact.get(`${String(record.product)}|${String(record.question_type)}|${String(record.fact)}`);
    return topic ? { intent: `${String(record.product)}|${topic}`, product: String(record.product), topic } : null;
  };
  const out: BenchRow[] = [];
  records.forEach((record, n) => {
    if (typeof record.question !== 'string' || typeof record.answer !== 'string') return; // rows ingest would quarantine
    const found = intentOf(n);
    out.push({
      id: String(record.id),
      question: record.question,
      answer: record.answer,
      groupId: String(record.id),
      intent: found?.intent ?? null,
      template: found ? templateOf(record.question, found.product, found.topic) : null,
      clean: labels[n]!.kind === 'clean',
    });
  });
  return out;
}

/** Held-out wordings: per sampled intent, a query row and the rows its search must not see. */
function heldOutQueries(rows: BenchRow[], count: number, seed: number) {
  const byIntent = new Map<string, number[]>();
  rows.forEach((row, n) => {
    if (!row.intent) return;
    const members = byIntent.get(row.intent);
    if (members) members.push(n);
    else byIntent.set(row.intent, [n]);
  });
  const random = mulberry32(seed);
  const candidates = random.shuffle([...byIntent.entries()]).flatMap(([intent, members]) => {
    const templates = [...new Set(members.filter((n) => rows[n]!.clean && rows[n]!.template !== null).map((n) => rows[n]!.template!))];
    if (templates.length < 2) return [];
    const heldOut = random.pick(templates);
    const query = members.find((n) => rows[n]!.clean && rows[n]!.template === heldOut)!;
    const hidden = new Set(members.filter((n) => rows[n]!.template === heldOut || rows[n]!.template === null).map((n) => rows[n]!.id));
    return [{ intent, query, hidden }];
  });
  return candidates.slice(0, count);
}

function recall(found: BenchRow[][], intents: string[]) {
  const within = (k: number) => found.filter((hits, n) => hits.slice(0, k).some((row) => row.intent === intents[n])).length / found.length;
  return { at1: within(1), at5: within(K) };
}

const latency = (ms: number[]) => ({ p50: percentile(ms, 50), p95: percentile(ms, 95), queries: ms.length });

async function measureSize(size: number, queries: string[], qualityQueries: number, embedder: Embedder) {
  const rows = sampleRows(size, SAMPLE_SEED);
  console.error(`${size} sample rows: ${rows.length} with a question and an answer; embedding them`);
  let began = performance.now();
  const embedding = await EmbeddingIndex.build(rows, embedder, (done, total) => {
    if (done % 10_240 === 0 || done === total) console.error(`  embedded ${done}/${total}`);
  });
  const embeddingBuildSeconds = (performance.now() - began) / 1000;
  began = performance.now();
  const lexical = new LexicalIndex(rows);
  const lexicalBuildSeconds = (performance.now() - began) / 1000;

  // Quality: held-out wordings, found among the others.
  const held = heldOutQueries(rows, qualityQueries, SAMPLE_SEED + size);
  const intents = held.map((entry) => entry.intent);
  const excludeFor = (n: number) => (row: BenchRow) => held[n]!.hidden.has(row.id);
  const embeddingFound = held.map((entry, n) => embedding.search(embedding.vector(entry.query), K, excludeFor(n)).map((hit) => hit.row));
  const lexicalFound = held.map((entry, n) => lexical.search(rows[entry.query]!.question, K, excludeFor(n)).map((hit) => hit.row));

  // Latency: questions the index does not hold, one at a time.
  const embedMs: number[] = [];
  const scanMs: number[] = [];
  const lexicalMs: number[] = [];
  for (const [n, question] of queries.entries()) {
    const t0 = performance.now();
    const [vector] = await embedder.embed([question]);
    const t1 = performance.now();
    embedding.search(vector!, K);
    const t2 = performance.now();
    lexical.search(question, K);
    const t3 = performance.now();
    if (n < WARMUP_QUERIES) continue;
    embedMs.push(t1 - t0);
    scanMs.push(t2 - t1);
    lexicalMs.push(t3 - t2);
  }
  return {
    size,
    indexedRows: rows.length,
    qualityQueries: held.length,
    embedding: {
      recall: recall(embeddingFound, intents),
      buildSeconds: embeddingBuildSeconds,
      questionsPerSecond: rows.length / embeddingBuildSeconds,
      queryMs: latency(embedMs.map((ms, n) => ms + scanMs[n]!)),
      embedMs: latency(embedMs),
      scanMs: latency(scanMs),
    },
    lexical: { recall: recall(lexicalFound, intents), buildSeconds: lexicalBuildSeconds, queryMs: latency(lexicalMs) },
  };
}

type SizeResult = Awaited<ReturnType<typeof measureSize>>;

function table(results: SizeResult[]): string {
  const rows: Cell[][] = [];
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  const fixed = (value: number, digits: number) => value.toFixed(digits);
  for (const { size, embedding: e, lexical: l, qualityQueries } of results) {
    const label = `${size.toLocaleString('en-US')} rows`;
    rows.push(
      [
        `${label}: recall@1 (${qualityQueries} held-out wordings)`,
        fixed(e.recall.at1, 3),
        fixed(l.recall.at1, 3),
        ratio(e.recall.at1, l.recall.at1),
      ],
      [`${label}: recall@${K}`, fixed(e.recall.at5, 3), fixed(l.recall.at5, 3), ratio(e.recall.at5, l.recall.at5)],
      [`${label}: query p50, ms`, fixed(e.queryMs.p50, 1), fixed(l.queryMs.p50, 1), ratio(e.queryMs.p50, l.queryMs.p50)],
      [`${label}: query p95, ms`, fixed(e.queryMs.p95, 1), fixed(l.queryMs.p95, 1), ratio(e.queryMs.p95, l.queryMs.p95)],
      [`${label}: of which scan p50 / p95, ms`, `${fixed(e.scanMs.p50, 1)} / ${fixed(e.scanMs.p95, 1)}`, '', ''],
      [`${label}: index build, s`, fixed(e.buildSeconds, 1), fixed(l.buildSeconds, 2), ratio(e.buildSeconds, l.buildSeconds)],
    );
  }
  if (results.length >= 2) {
    const [first, last] = [results[0]!, results[results.length - 1]!];
    const times = `${(last.size / first.size).toFixed(0)}x the rows`;
    rows.push(
      [
        `build time, ${times}`,
        ratio(last.embedding.buildSeconds, first.embedding.buildSeconds),
        ratio(last.lexical.buildSeconds, first.lexical.buildSeconds),
        '',
      ],
      [
        `query p50, ${times}`,
        ratio(last.embedding.queryMs.p50, first.embedding.queryMs.p50),
        ratio(last.lexical.queryMs.p50, first.lexical.queryMs.p50),
        '',
      ],
    );
  }
  return renderMarkdown([{ kind: 'table', header: ['', 'embedding', 'lexical', 'ratio embedding / lexical'], rows }]);
}

async function main(): Promise<void> {
  const options = readOptions();
  ensureEmbedderExport();
  const queryRecords = generateLabelledSampleRecords(options.queries * 2 + 100, QUERY_SEED);
  const queries = queryRecords.records
    .filter((record, n) => queryRecords.labels[n]!.kind === 'clean' && typeof record.question === 'string')
    .map((record) => record.question as string)
    .slice(0, options.queries + WARMUP_QUERIES);
  const loadBefore = os.loadavg();
  const started = performance.now();
  const embedder = await loadEmbedder(EXPORT_DIR);
  const results: SizeResult[] = [];
  try {
    for (const size of options.sizes) results.push(await measureSize(size, queries, QUALITY_QUERIES, embedder));
  } finally {
    await embedder.close();
  }
  const wallSeconds = (performance.now() - started) / 1000;
  const loadAfter = os.loadavg();

  console.log(`\nRetrieval benchmark (this machine: ${os.cpus().length} CPUs, ${INTRA_OP_THREADS} ONNX Runtime threads)\n`);
  console.log(
    `- embedding: ${embedder.manifest.model} (${embedder.dims} dims) in onnxruntime-node, exact dot-product scan; lexical: 3-gram Jaccard`,
  );
  console.log(`- sample data seed ${SAMPLE_SEED}; recall over held-out wordings of one intent (product and topic), top ${K}`);
  console.log(
    `- latency over ${options.queries} unseen questions (seed ${QUERY_SEED}), one at a time, ${WARMUP_QUERIES} warm-ups not counted`,
  );
  console.log(
    `- load average (1 min) ${loadBefore[0]!.toFixed(2)} before, ${loadAfter[0]!.toFixed(2)} after; ${wallSeconds.toFixed(0)} s in all\n`,
  );
  console.log(table(results));

  const resultsDir = join(import.meta.dirname, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const result = {
    machine: {
      cpus: os.cpus().length,
      platform: `${os.platform()} ${os.release()}`,
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadAfter,
    },
    settings: { sampleSeed: SAMPLE_SEED, querySeed: QUERY_SEED, k: K, latencyQueries: options.queries, intraOpThreads: INTRA_OP_THREADS },
    embedder: { model: embedder.manifest.model, dims: embedder.dims, maxTokens: embedder.manifest.maxTokens, exportDir: EXPORT_DIR },
    sizes: results,
    ratios: results.map(({ size, embedding: e, lexical: l }) => ({
      size,
      recallAt1: e.recall.at1 / l.recall.at1,
      recallAt5: e.recall.at5 / l.recall.at5,
      queryP50: e.queryMs.p50 / l.queryMs.p50,
      queryP95: e.queryMs.p95 / l.queryMs.p95,
      buildSeconds: e.buildSeconds / l.buildSeconds,
    })),
    wallSeconds,
  };
  writeFileSync(join(resultsDir, 'retrieval.json'), JSON.stringify(result, null, 2));
  console.error('written to bench/results/retrieval.json');
}

await main();
