/**
 * The evaluation set (cpu task queue): one seeded draw of test rows that every system answers, so
 * the tuned model and its baselines are compared on the same rows.
 */
import { EvaluationRow } from '../../schemas/engine';
import type { ArtifactRef, StepContext, StepResult } from '../../schemas/manifests';
import type { EvalSetStats } from '../../schemas/steps';
import { toJsonl } from '../artifacts';
import { codeVersion } from '../code-version';
import { configError, storeFor } from '../context';
import { readRows } from '../data/arrow-io';
import { hashString } from '../data/minhash';
import { runCachedStep } from '../steps';

/** At most `limit` rows, drawn by a seeded hash of their ids, kept in file order. */
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

export async function prepareEvaluationSet(context: StepContext & { test: ArtifactRef }): Promise<StepResult<EvalSetStats, 'questions'>> {
  const store = storeFor(context);
  const { maxTestRows } = context.config.evaluation;
  const seed = context.config.split.seed;
  return runCachedStep(
    store,
    {
      step: 'eval-set',
      config: { maxTestRows, seed },
      inputs: [context.test],
      code: codeVersion(import.meta.url),
      noCache: context.noCache,
      summarize: (s: EvalSetStats) => `${s.rows} of ${s.testRows} test rows`,
    },
    async () => {
      const test = await readRows(store, context.test);
      const rows = drawEvaluationRows(test, maxTestRows, seed).map((row) =>
        EvaluationRow.parse({
          id: row.id,
          question: row.question,
          reference: row.answer,
          fact: row.fact,
          category: row.category,
          product: row.product,
        }),
      );
      if (rows.length === 0)
        throw configError('the test split is empty, so there is nothing to evaluate on; give split.test a share above 0 (e.g. 0.1)');
      const questions = await store.put(toJsonl(rows), '.jsonl', rows.length);
      return { outputs: { questions }, stats: { rows: rows.length, testRows: test.length } };
    },
  );
}
