/**
 * The retrieval baseline (cpu task queue): each question answered with the training answer of the
 * most similar training question, indexed on the rows the model was trained on (the same seeded draw).
 */
import { RetrievalMetrics } from '../../schemas/engine';
import type { ArtifactRef, StepContext, StepResult } from '../../schemas/manifests';
import type { RetrievalStats } from '../../schemas/steps';
import { artifactPath } from '../artifacts';
import { codeVersion } from '../code-version';
import { storeFor } from '../context';
import { engineMetrics } from '../engine-process';
import { runCachedStep } from '../steps';

export async function retrieveAnswers(
  input: StepContext & { train: ArtifactRef; questions: ArtifactRef },
): Promise<StepResult<RetrievalStats, 'answers'>> {
  const store = storeFor(input);
  const { maxTrainRows, seed } = input.config.training;
  return runCachedStep(
    store,
    {
      step: 'answers-retrieval',
      config: { maxTrainRows, seed },
      inputs: [input.train, input.questions],
      code: codeVersion(import.meta.url, 'retrieve'),
      noCache: input.noCache,
      summarize: (s: RetrievalStats) => `${s.rows} answers from ${s.indexRows} training rows`,
    },
    async () => {
      const output = await store.tempPath();
      const args = ['retrieve', '--train', artifactPath(input.train), '--questions', artifactPath(input.questions), '--output', output];
      if (maxTrainRows !== undefined) args.push('--max-train-rows', String(maxTrainRows));
      const metrics = await engineMetrics([...args, '--seed', String(seed)], 'retrieval', RetrievalMetrics);
      const answers = await store.putFile(output, '.jsonl', metrics.rows);
      return { outputs: { answers }, stats: metrics };
    },
  );
}
