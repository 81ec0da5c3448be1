/**
 * Generated answers (gpu task queue): an ONNX export answers every evaluation row in Node, through
 * the generator the chat server uses, so what is evaluated is what will be served. A grounded
 * system's prompts carry each row's known pairs (the retriever's, as serving will have them), and
 * every answer records which pairs it was given.
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Context } from '@temporalio/activity';
import { ContextRow, EvaluationRow, Prediction, type SystemName } from '../../schemas/engine';
import type { ArtifactRef, GenerationProgress, StepContext, StepResult } from '../../schemas/manifests';
import type { GenerationStats } from '../../schemas/steps';
import { loadGenerator } from '../../serve/generation';
import { groundedQuestion } from '../../serve/grounding';
import { readJsonl, toJsonl } from '../artifacts';
import { codeVersion } from '../code-version';
import { storeFor } from '../context';
import { beat, runCachedStep } from '../steps';

const HEARTBEAT_MS = 5_000;

function cancellationSignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined; // called directly, not as an activity
  }
}

/** The answers a crashed attempt already appended; a half-written last line is dropped. */
async function finishedAnswers(partial: string): Promise<Map<string, Prediction>> {
  const done = new Map<string, Prediction>();
  if (!existsSync(partial)) return done;
  for (const line of (await readFile(partial, 'utf8')).split('\n')) {
    try {
      const record = Prediction.parse(JSON.parse(line));
      done.set(record.id, record);
    } catch {
      // An incomplete line.
    }
  }
  return done;
}

/**
 * Greedy answers from an ONNX export for every evaluation row, in batches of similar-length
 * questions. Finished batches are appended to a file in the step's work folder, so a retried
 * attempt goes on where the last one stopped.
 */
export async function generateAnswers(
  input: StepContext & {
    system: Exclude<SystemName, 'retrieval'>;
    onnx: ArtifactRef;
    questions: ArtifactRef;
    /** Grounded systems: the known pairs of every question. */
    contexts?: ArtifactRef;
  },
): Promise<StepResult<GenerationStats, 'answers'>> {
  const store = storeFor(input);
  const { maxNewTokens, batchSize } = input.config.evaluation;
  const decoding = input.config.decoding;
  const { endProbability, ...controls } = decoding;
  return runCachedStep(
    store,
    {
      step: `answers-${input.system}`,
      config: { maxNewTokens, batchSize, decoding },
      inputs: [input.onnx, input.questions, ...(input.contexts ? [input.contexts] : [])],
      code: codeVersion(import.meta.url),
      noCache: input.noCache,
      summarize: (s: GenerationStats) => `${s.rows} answers, ${s.newTokens} tokens at ${s.tokensPerSecond} tokens/s`,
    },
    async (key) => {
      const rows = await readJsonl(store, input.questions, EvaluationRow);
      const contexts = new Map((input.contexts ? await readJsonl(store, input.contexts, ContextRow) : []).map((c) => [c.id, c.context]));
      const workDir = store.workDir(key);
      await mkdir(workDir, { recursive: true });
      const partial = join(workDir, 'answers.jsonl');
      const done = await finishedAnswers(partial);
      const generator = await loadGenerator(await store.fetch(input.onnx));
      const format = generator.tokenizer.promptFormat;
      const promptOf = (row: EvaluationRow) => groundedQuestion(format, row.question, contexts.get(row.id) ?? []);
      // A cancelled run (or a worker shutting down) stops generating between decode steps, not after the set.
      const signal = cancellationSignal();
      const progress: GenerationProgress = { system: input.system, rows: rows.length, answered: done.size, newTokens: 0, seconds: 0 };
      const ticker = setInterval(() => beat(progress), HEARTBEAT_MS);
      const started = performance.now();
      try {
        // Similar prompt lengths share a batch, so little compute goes to padding.
        const todo = rows
          .filter((row) => !done.has(row.id))
          .map((row) => ({ row, length: generator.tokenizer.encodePrompt(promptOf(row)).length }))
          .sort((a, b) => a.length - b.length);
        for (let start = 0; start < todo.length; start += batchSize) {
          const batch = todo.slice(start, start + batchSize).map((entry) => entry.row);
          const generations = await generator.generate(batch.map(promptOf), {
            maxNewTokens,
            greedy: true,
            ...controls,
            endProbability: endProbability ?? undefined,
            signal,
          });
          if (signal?.aborted) throw signal.reason;
          const records: Prediction[] = batch.map((row, n) => ({
            ...row,
            system: input.system,
            prediction: generations[n]!.text.trim(),
            newTokens: generations[n]!.tokens.length,
            ...(input.contexts ? { contextIds: (contexts.get(row.id) ?? []).map((pair) => pair.id) } : {}),
          }));
          await appendFile(partial, toJsonl(records));
          for (const record of records) done.set(record.id, record);
          progress.answered = done.size;
          progress.newTokens += records.reduce((sum, r) => sum + (r.newTokens ?? 0), 0);
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
      const newTokens = predictions.map((p) => p.newTokens ?? 0);
      return {
        outputs: { answers },
        stats: {
          system: input.system,
          rows: predictions.length,
          newTokens: newTokens.reduce((sum, n) => sum + n, 0),
          tokensPerSecond: Math.round((progress.newTokens / Math.max(seconds, 1e-3)) * 10) / 10,
          truncated: newTokens.filter((n) => n >= maxNewTokens).length,
        },
      };
    },
  );
}
