/**
 * The evaluation activities. One seeded draw of test rows (the evaluation set) is answered by every
 * system: the tuned export and the untuned base export, both generated in Node with the module the
 * chat server uses, and the retrieval baseline. The engine scores all answers in one call, so the
 * systems are compared on the same rows by the same code. The forgetting check measures perplexity
 * on general English before and after tuning.
 *
 * Generation and perplexity run the model (gpu task queue); the rest is light (cpu task queue).
 */
import { appendFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { ApplicationFailure } from '@temporalio/activity';
import type { PipelineConfig } from '../schemas/config';
import type { ArtifactRef, MetricTable, StepResult, SystemName } from '../schemas/manifests';
import { loadGenerator } from '../serve/generation';
import { artifactPath, readJsonl, sha256File, toJsonl, type ArtifactStore } from './artifacts';
import { readRows } from './data/arrow-io';
import { hashString } from './data/minhash';
import { ErrorTypes, baseModelFor, storeFor } from './data-stage';
import { engineMetrics } from './engine-process';
import { beat, engineVersion, runCachedStep } from './steps';

export interface EvaluateInput {
  config: PipelineConfig;
  configDir: string;
  noCache?: boolean;
}

/** One line of the evaluation set: what every system is asked, and what it is scored against. */
export interface EvaluationRow {
  id: string;
  question: string;
  reference: string;
  fact: string | null;
  category: string | null;
}

/** One system's answer to one evaluation row, as `engine score` reads it. */
export interface Prediction extends EvaluationRow {
  system: SystemName;
  prediction: string;
}

const projectRoot = join(import.meta.dirname, '..');
export const DEFAULT_GENERAL_TEXT = join(projectRoot, 'assets', 'general-english.txt');
const HEARTBEAT_MS = 5_000;

/** The evaluation set: at most `maxTestRows` test rows, drawn by a seeded hash of their ids, kept in file order. */
export function drawEvaluationRows<R extends { id: string }>(rows: R[], limit: number | undefined, seed: number): R[] {
  if (limit === undefined || limit >= rows.length) return rows;
  const chosen = new Set(
    rows
      .map((row) => ({ id: row.id, hash: hashString(row.id, seed) }))
      .sort((a, b) => a.hash - b.hash || (a.id < b.id ? -1 : 1))
      .slice(0, limit)
      .map((entry) => entry.id),
  );
  return rows.filter((row) => chosen.has(row.id));
}

export async function prepareEvaluationSet(
  input: EvaluateInput & { test: ArtifactRef },
): Promise<StepResult<{ rows: number; testRows: number }>> {
  const store = storeFor(input);
  const { maxTestRows } = input.config.evaluation;
  const seed = input.config.split.seed;
  return runCachedStep(
    store,
    { step: 'eval-set', config: { maxTestRows, seed }, inputs: [input.test], noCache: input.noCache },
    async () => {
      const test = await readRows(input.test);
      const rows: EvaluationRow[] = drawEvaluationRows(test, maxTestRows, seed).map((row) => ({
        id: row.id,
        question: row.question,
        reference: row.answer,
        fact: row.fact,
        category: row.category,
      }));
      if (rows.length === 0)
        throw ApplicationFailure.nonRetryable(
          'the test split is empty, so there is nothing to evaluate on; give split.test a share above 0 (e.g. 0.1)',
          ErrorTypes.config,
        );
      const questions = await store.put(toJsonl(rows), '.jsonl', rows.length);
      return { outputs: { questions }, stats: { rows: rows.length, testRows: test.length } };
    },
  );
}

/** The generation heartbeat: how far one system has got through the evaluation set. */
export interface GenerationProgress {
  system: SystemName;
  rows: number;
  answered: number;
  newTokens: number;
  seconds: number;
}

export interface GenerationStats {
  system: SystemName;
  rows: number;
  newTokens: number;
  tokensPerSecond: number;
  /** Rows cut off at maxNewTokens before they ended their turn. */
  truncated: number;
}

/**
 * Greedy answers from an ONNX export for every evaluation row, in batches of similar-length
 * questions. Finished batches are appended to a file in the step's work folder, so a retried
 * attempt goes on where the last one stopped.
 */
export async function generateAnswers(
  input: EvaluateInput & { system: 'tuned' | 'base'; onnx: ArtifactRef; questions: ArtifactRef },
): Promise<StepResult<GenerationStats>> {
  const store = storeFor(input);
  const { maxNewTokens, batchSize } = input.config.evaluation;
  return runCachedStep(
    store,
    { step: `answers-${input.system}`, config: { maxNewTokens, batchSize }, inputs: [input.onnx, input.questions], noCache: input.noCache },
    async (key) => {
      const rows = await readJsonl<EvaluationRow>(input.questions);
      const workDir = store.workDir(key);
      await mkdir(workDir, { recursive: true });
      const partial = join(workDir, 'answers.jsonl');
      const done = new Map<string, Prediction & { newTokens: number }>();
      if (existsSync(partial)) {
        // A crash can leave a half-written last line: keep only complete records.
        for (const line of (await readFile(partial, 'utf8')).split('\n')) {
          try {
            const record = JSON.parse(line) as Prediction & { newTokens: number };
            done.set(record.id, record);
          } catch {
            // Incomplete line.
          }
        }
      }
      const generator = await loadGenerator(artifactPath(input.onnx));
      const progress: GenerationProgress = { system: input.system, rows: rows.length, answered: done.size, newTokens: 0, seconds: 0 };
      const ticker = setInterval(() => beat(progress), HEARTBEAT_MS);
      const started = performance.now();
      try {
        // Similar prompt lengths share a batch, so little compute goes to padding.
        const todo = rows
          .filter((row) => !done.has(row.id))
          .map((row) => ({ row, length: generator.tokenizer.encodePrompt(row.question).length }))
          .sort((a, b) => a.length - b.length);
        for (let start = 0; start < todo.length; start += batchSize) {
          const batch = todo.slice(start, start + batchSize).map((entry) => entry.row);
          const generations = await generator.generate(
            batch.map((row) => row.question),
            { maxNewTokens, greedy: true },
          );
          const records = batch.map((row, n) => ({
            ...row,
            system: input.system,
            prediction: generations[n]!.text.trim(),
            newTokens: generations[n]!.tokens.length,
          }));
          await appendFile(partial, toJsonl(records));
          for (const record of records) done.set(record.id, record);
          progress.answered = done.size;
          progress.newTokens += records.reduce((sum, r) => sum + r.newTokens, 0);
          progress.seconds = Math.round((performance.now() - started) / 1000);
          beat(progress);
        }
      } finally {
        clearInterval(ticker);
        await generator.close();
      }
      const predictions = rows.map((row) => done.get(row.id)!);
      const answers = await store.put(toJsonl(predictions), '.jsonl', predictions.length);
      await rm(workDir, { recursive: true, force: true });
      const seconds = (performance.now() - started) / 1000;
      return {
        outputs: { answers },
        stats: {
          system: input.system,
          rows: predictions.length,
          newTokens: predictions.reduce((sum, p) => sum + p.newTokens, 0),
          tokensPerSecond: Math.round((progress.newTokens / Math.max(seconds, 1e-3)) * 10) / 10,
          truncated: predictions.filter((p) => p.newTokens >= maxNewTokens).length,
        },
      };
    },
  );
}

/** The retrieval baseline, indexed on the training rows the model was trained on (the same seeded draw). */
export async function retrieveAnswers(
  input: EvaluateInput & { train: ArtifactRef; questions: ArtifactRef },
): Promise<StepResult<Record<string, number | null>>> {
  const store = storeFor(input);
  const { maxTrainRows, seed } = input.config.training;
  return runCachedStep(
    store,
    {
      step: 'answers-retrieval',
      config: { maxTrainRows, seed, engine: engineVersion() },
      inputs: [input.train, input.questions],
      noCache: input.noCache,
    },
    async () => {
      const output = await store.tempPath();
      const args = ['retrieve', '--train', artifactPath(input.train), '--questions', artifactPath(input.questions), '--output', output];
      if (maxTrainRows !== undefined) args.push('--max-train-rows', String(maxTrainRows));
      const metrics = await engineMetrics([...args, '--seed', String(seed)], 'retrieval');
      const answers = await store.putFile(output, '.jsonl', metrics.rows ?? null);
      return { outputs: { answers }, stats: metrics };
    },
  );
}

/** The text file of the forgetting check: the config's, or the general English the project ships. */
export function generalTextPath(input: Pick<EvaluateInput, 'config' | 'configDir'>): string {
  const configured = input.config.evaluation.generalText;
  return configured ? resolve(input.configDir, configured) : DEFAULT_GENERAL_TEXT;
}

async function perplexityStep(store: ArtifactStore, input: EvaluateInput, model: ArtifactRef | null, text: string, textSha256: string) {
  const base = baseModelFor(input);
  return runCachedStep(
    store,
    {
      step: model ? 'perplexity-tuned' : 'perplexity-base',
      // The base model's perplexity depends only on the model and the text: it is measured once.
      config: { text: textSha256, engine: engineVersion(), ...(model ? {} : { base }) },
      inputs: model ? [model] : [],
      noCache: input.noCache,
    },
    async () => {
      const metrics = await engineMetrics(['perplexity', '--model', model ? artifactPath(model) : base, '--text', text], 'perplexity');
      return { outputs: {}, stats: metrics };
    },
  );
}

export interface ForgettingStats {
  /** The text file: relative to the project when it is the shipped one, else absolute. */
  text: string;
  textSha256: string;
  base: { perplexity: number | null; tokens: number | null };
  tuned: { perplexity: number | null; tokens: number | null };
  /** tuned / base: above 1 means the model now predicts general English worse. */
  ratio: number | null;
}

/** The forgetting check: perplexity of the base and the tuned model on general English. */
export async function checkForgetting(input: EvaluateInput & { model: ArtifactRef }): Promise<StepResult<ForgettingStats>> {
  const store = storeFor(input);
  const text = generalTextPath(input);
  if (!existsSync(text)) {
    throw ApplicationFailure.nonRetryable(
      `evaluation.generalText: ${text} does not exist; point it at a plain-text file or remove it to use the shipped one`,
      ErrorTypes.config,
    );
  }
  const textSha256 = await sha256File(text);
  const started = performance.now();
  const base = await perplexityStep(store, input, null, text, textSha256);
  const tuned = await perplexityStep(store, input, input.model, text, textSha256);
  const pick = (stats: Record<string, number | null>) => ({ perplexity: stats.perplexity ?? null, tokens: stats.tokens ?? null });
  const ratio = base.stats.perplexity && tuned.stats.perplexity ? tuned.stats.perplexity / base.stats.perplexity : null;
  return {
    step: 'forgetting',
    key: tuned.key,
    reused: base.reused && tuned.reused,
    outputs: {},
    stats: {
      text: text.startsWith(projectRoot) ? relative(projectRoot, text) : text,
      textSha256,
      base: pick(base.stats),
      tuned: pick(tuned.stats),
      ratio,
    },
    seconds: Math.round(performance.now() - started) / 1000,
  };
}

export interface ScoreStats {
  rows: number;
  metrics: MetricTable;
}

/** Scores every system's answers in one engine call; the engine refuses systems scored on different rows. */
export async function scoreAnswers(input: EvaluateInput & { answers: ArtifactRef[] }): Promise<StepResult<ScoreStats>> {
  const store = storeFor(input);
  return runCachedStep(
    store,
    { step: 'score', config: { engine: engineVersion() }, inputs: input.answers, noCache: input.noCache },
    async () => {
      const combined = await store.tempPath();
      const output = await store.tempPath();
      await writeFile(combined, (await Promise.all(input.answers.map((ref) => readFile(artifactPath(ref), 'utf8')))).join(''));
      const flat = await engineMetrics(['score', '--input', combined, '--output', `${output}.json`], 'score');
      await rm(combined, { force: true });
      const scores = await store.putFile(`${output}.json`, '.json', null);
      const metrics: MetricTable = {};
      let rows = 0;
      for (const [name, value] of Object.entries(flat)) {
        const [system, metric] = name.split('.', 2) as [SystemName, string];
        if (metric === 'rows') rows = value ?? 0;
        else (metrics[system] ??= {})[metric] = value;
      }
      return { outputs: { scores }, stats: { rows, metrics } };
    },
  );
}
