/**
 * Human review's sample (cpu task queue): `review.sampleSize` answers of the served system, drawn
 * from the evaluation's answers by a seeded hash of their ids, so a retried or replayed draw is the
 * same; each with its question and reference answer, for reviewers to judge.
 */
import { Prediction } from '../schemas/engine';
import type { ArtifactRef, ReviewItem, StepContext } from '../schemas/manifests';
import { readJsonl } from './artifacts';
import { storeFor } from './context';
import { hashString } from './data/minhash';

export async function drawReviewSample(input: StepContext & { answers: ArtifactRef }): Promise<ReviewItem[]> {
  const { sampleSize } = input.config.review;
  const seed = input.config.training.seed;
  const rows = await readJsonl(storeFor(input), input.answers, Prediction);
  return rows
    .map((row) => ({ row, rank: hashString(row.id, seed) >>> 0 }))
    .sort((a, b) => a.rank - b.rank || (a.row.id < b.row.id ? -1 : 1))
    .slice(0, sampleSize)
    .map(({ row }) => ({ id: row.id, question: row.question, answer: row.prediction, reference: row.reference }));
}
