/**
 * A sweep's plan, pure and deterministic (the sweep workflow and the tests call it): the grid points,
 * the training budget in steps, the rungs, which trials go on after a rung, and the winner.
 */
import { mulberry32 } from '../lib/seeded-random';
import type { PipelineConfig, SweepMetric, TrainingSection } from '../schemas/config';
import type { TrainingOverrides } from '../schemas/manifests';

/** The grid's points as training overrides, in grid order (strategy, learning rate, rank, alpha); a random sample when `sample` is set. */
export function sweepPoints(config: Pick<PipelineConfig, 'sweep' | 'training'>): TrainingOverrides[] {
  const { sweep, training } = config;
  const ratesOf = (strategy: 'lora' | 'full') =>
    (Array.isArray(sweep.learningRate) ? sweep.learningRate : sweep.learningRate?.[strategy]) ?? [training.learningRate];
  const points: TrainingOverrides[] = [];
  for (const strategy of sweep.strategy) {
    for (const learningRate of ratesOf(strategy)) {
      if (strategy === 'full') {
        points.push({ strategy, learningRate });
        continue;
      }
      for (const rank of sweep.rank) {
        const alphas = Array.isArray(sweep.alpha) ? sweep.alpha : [sweep.alpha.perRank * rank];
        for (const alpha of alphas) points.push({ strategy, learningRate, lora: { rank, alpha } });
      }
    }
  }
  if (!sweep.sample || sweep.sample.trials >= points.length) return points;
  // A seeded draw without replacement, kept in grid order so the ids read in order.
  const chosen = mulberry32(sweep.sample.seed)
    .shuffle([...points.keys()])
    .slice(0, sweep.sample.trials);
  return chosen.sort((a, b) => a - b).map((n) => points[n]!);
}

/** A point in words: `lora r8 a16 lr 0.001`, `full lr 0.0001`. */
export function describePoint(point: TrainingOverrides): string {
  const lora = point.strategy === 'full' || !point.lora ? '' : ` r${point.lora.rank} a${point.lora.alpha}`;
  return `${point.strategy ?? 'lora'}${lora} lr ${point.learningRate}`;
}

/** Optimizer steps of the training budget, as the engine counts them (engine/train.py total_optimizer_steps). */
export function budgetSteps(
  training: Pick<TrainingSection, 'maxSteps' | 'epochs' | 'batchSize' | 'gradientAccumulation'>,
  trainRows: number,
): number {
  if (training.maxSteps) return training.maxSteps;
  const batchesPerEpoch = Math.ceil(trainRows / training.batchSize);
  return Math.max(1, Math.ceil((training.epochs * batchesPerEpoch) / training.gradientAccumulation));
}

/** The rungs in steps: each share of the budget rounded, at least step 1, before the end, without repeats. */
export function rungSteps(shares: number[], total: number): number[] {
  const steps = shares.map((share) => Math.max(1, Math.round(share * total))).filter((step) => step < total);
  return [...new Set(steps)].sort((a, b) => a - b);
}

/** True when a lower value of the metric is better. */
export const lowerIsBetter = (metric: SweepMetric) => metric === 'validationLoss' || metric === 'degeneration';

/**
 * The trials that go on after a rung: the best `ceil(n / reduction)` by score (at least `minTrials`),
 * ties to the earlier trial. A trial without a score (it failed) never goes on.
 */
export function survivors(
  scores: Array<{ trial: number; score: number | null }>,
  reduction: number,
  minTrials: number,
  lower = true,
): number[] {
  const scored = scores.filter((s): s is { trial: number; score: number } => s.score !== null && Number.isFinite(s.score));
  const keep = Math.min(scored.length, Math.max(minTrials, Math.ceil(scores.length / reduction)));
  return scored
    .sort((a, b) => (lower ? a.score - b.score : b.score - a.score) || a.trial - b.trial)
    .slice(0, keep)
    .map((s) => s.trial)
    .sort((a, b) => a - b);
}

/** The winner: the best score, ties to the earlier trial; null when no trial has a score. */
export function bestTrial(scores: Array<{ trial: number; score: number | null }>, lower: boolean): number | null {
  return survivors(scores, Number.POSITIVE_INFINITY, 1, lower)[0] ?? null;
}
