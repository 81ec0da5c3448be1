/**
 * A sweep's plan: the grid a pipeline file names, the budget as the engine counts it, the rungs,
 * which trials successive halving keeps, and the winner.
 */
import { describe, expect, it } from 'vitest';
import { PipelineConfig } from '../../schemas/config';
import { bestTrial, budgetSteps, describePoint, rungSteps, survivors, sweepPoints } from '../../workflows/sweep-plan';

const config = (sweep: object, training: object = {}) =>
  PipelineConfig.parse({ name: 'x', data: { sample: { rows: 10 } }, sweep, training: { learningRate: 0.001, ...training } });

describe('sweep grid', () => {
  it('crosses strategies, learning rates, ranks and alphas; full fine-tuning is one point per rate', () => {
    const points = sweepPoints(config({ strategy: ['full', 'lora'], rank: [4, 8], alpha: [8, 16], learningRate: [1e-4, 1e-3] }));
    expect(points.map(describePoint)).toEqual([
      'full lr 0.0001',
      'full lr 0.001',
      'lora r4 a8 lr 0.0001',
      'lora r4 a16 lr 0.0001',
      'lora r8 a8 lr 0.0001',
      'lora r8 a16 lr 0.0001',
      'lora r4 a8 lr 0.001',
      'lora r4 a16 lr 0.001',
      'lora r8 a8 lr 0.001',
      'lora r8 a16 lr 0.001',
    ]);
  });

  it('takes a learning-rate list per strategy, the training rate where a strategy has none', () => {
    const perStrategy = (learningRate: object) =>
      sweepPoints(config({ strategy: ['full', 'lora'], rank: [4], learningRate })).map(describePoint);
    expect(perStrategy({ lora: [0.002], full: [1e-4, 4e-4] })).toEqual(['full lr 0.0001', 'full lr 0.0004', 'lora r4 a8 lr 0.002']);
    expect(perStrategy({ full: [1e-4] })).toEqual(['full lr 0.0001', 'lora r4 a8 lr 0.001']);
  });

  it('defaults to LoRA ranks 4 to 32 with alpha twice the rank, at the training rate', () => {
    expect(sweepPoints(config({})).map(describePoint)).toEqual([
      'lora r4 a8 lr 0.001',
      'lora r8 a16 lr 0.001',
      'lora r16 a32 lr 0.001',
      'lora r32 a64 lr 0.001',
    ]);
  });

  it('samples points without replacement, the same ones for the same seed, in grid order', () => {
    const grid = { rank: [1, 2, 4, 8, 16, 32], alpha: [8, 16] };
    const drawn = sweepPoints(config({ ...grid, sample: { trials: 5, seed: 3 } }));
    expect(drawn).toHaveLength(5);
    expect(new Set(drawn.map(describePoint)).size).toBe(5);
    expect(sweepPoints(config({ ...grid, sample: { trials: 5, seed: 3 } }))).toEqual(drawn);
    expect(sweepPoints(config({ ...grid, sample: { trials: 5, seed: 4 } }))).not.toEqual(drawn);
    const all = sweepPoints(config(grid)).map(describePoint);
    const positions = drawn.map((p) => all.indexOf(describePoint(p)));
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(sweepPoints(config({ ...grid, sample: { trials: 50 } }))).toHaveLength(12);
  });
});

describe('budget and rungs', () => {
  it('counts the budget as the engine does: maxSteps, else epochs of batches over gradient accumulation', () => {
    const training = (t: object) => config({}, t).training;
    expect(budgetSteps(training({ maxSteps: 40 }), 1000)).toBe(40);
    expect(budgetSteps(training({ epochs: 2, batchSize: 8, gradientAccumulation: 3 }), 100)).toBe(9); // ceil(2 * 13 / 3)
    expect(budgetSteps(training({ epochs: 0.01, batchSize: 8 }), 10)).toBe(1);
  });

  it('puts rungs at shares of the budget, inside it, without repeats', () => {
    expect(rungSteps([0.25, 0.5], 48)).toEqual([12, 24]);
    expect(rungSteps([0.5, 0.25, 0.26], 8)).toEqual([2, 4]);
    expect(rungSteps([0.01, 0.99], 4)).toEqual([1]);
  });
});

describe('successive halving', () => {
  const scores = [
    { trial: 1, score: 2.0 },
    { trial: 2, score: 1.5 },
    { trial: 3, score: null }, // failed
    { trial: 4, score: 1.7 },
    { trial: 5, score: 1.5 },
    { trial: 6, score: 3.0 },
  ];

  it('keeps the best 1/reduction by validation loss, ties to the earlier trial, never a failed one', () => {
    expect(survivors(scores, 2, 1)).toEqual([2, 4, 5]);
    expect(survivors(scores, 3, 1)).toEqual([2, 5]);
    expect(survivors(scores, 6, 1)).toEqual([2]);
    expect(survivors(scores, 6, 4)).toEqual([1, 2, 4, 5]);
    expect(survivors(scores, 2, 1, false)).toEqual([1, 4, 6]);
  });

  it('picks the best finished trial as the winner, none when every trial failed', () => {
    expect(bestTrial(scores, true)).toBe(2);
    expect(bestTrial(scores, false)).toBe(6);
    expect(bestTrial([{ trial: 1, score: null }], true)).toBeNull();
  });
});
