/**
 * The retrieval baseline (cpu task queue): each question answered with the answer of the most similar
 * known question, by the same retriever that grounds prompts, over the whole training split (not
 * only the rows the model was trained on) and the knowledge files: what a search box over the
 * support records would give.
 */
import { EvaluationRow, type Prediction } from '../../schemas/engine';
import type { ArtifactRef, StepContext, StepResult } from '../../schemas/manifests';
import type { RetrievalStats } from '../../schemas/steps';
import { readJsonl, toJsonl } from '../artifacts';
import { codeVersion } from '../code-version';
import { storeFor } from '../context';
import { openRetriever, retrieverInputs, type RetrieverParts } from '../grounding';
import { beat, runCachedStep } from '../steps';

export async function retrieveAnswers(
  input: StepContext & RetrieverParts & { questions: ArtifactRef },
): Promise<StepResult<RetrievalStats, 'answers'>> {
  const store = storeFor(input);
  return runCachedStep(
    store,
    {
      step: 'answers-retrieval',
      config: { scope: input.config.retrieval.scope },
      inputs: [...retrieverInputs(input), input.questions],
      code: codeVersion(import.meta.url),
      noCache: input.noCache,
      summarize: (s: RetrievalStats) =>
        `${s.rows} answers from ${s.indexRows} ${input.knowledge ? 'training and knowledge' : 'training'} rows (mean similarity ${s.similarityMean.toFixed(3)})`,
    },
    async () => {
      const rows = await readJsonl(store, input.questions, EvaluationRow);
      const { retriever, sameProduct, close } = await openRetriever(store, input);
      try {
        const hits = await retriever.retrieve(
          rows.map((r) => r.question),
          1,
          undefined,
          (row, n) => sameProduct(row, rows[n]!.product),
          (done, total) => beat({ step: 'answers-retrieval', done, total }),
        );
        const predictions: Prediction[] = rows.map((row, n) => {
          const best = hits[n]![0];
          return {
            ...row,
            system: 'retrieval',
            prediction: best?.row.answer ?? '',
            ...(best ? { retrievedQuestion: best.row.question, similarity: Math.round(best.score * 1e4) / 1e4 } : {}),
          };
        });
        const answers = await store.put(toJsonl(predictions), '.jsonl', predictions.length);
        const scores = hits.map((h) => h[0]?.score ?? 0);
        const similarityMean = scores.reduce((a, b) => a + b, 0) / Math.max(1, scores.length);
        return {
          outputs: { answers },
          stats: { rows: predictions.length, indexRows: retriever.rows.length, similarityMean: Math.round(similarityMean * 1e4) / 1e4 },
        };
      } finally {
        await close();
      }
    },
  );
}
