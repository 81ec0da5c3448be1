import { describe, expect, it } from 'vitest';
import { Gate } from '../../schemas/config';
import type { MetricTable } from '../../schemas/manifests';
import { checkGate, checkGates } from '../../workflows/gates';

const metrics: MetricTable = {
  tuned: { rougeL: 0.42, factualAccuracy: 0.3, bleu: 12, perplexity: 21 },
  base: { rougeL: 0.12, factualAccuracy: 0.02, bleu: 1.5, perplexity: 20 },
  retrieval: { rougeL: 0.35, factualAccuracy: 0.31, bleu: 15, perplexity: null },
};
const gate = (raw: object) => Gate.parse(raw);

describe('promotion gates', () => {
  it('absolute gates compare the tuned value with min and max', () => {
    expect(checkGate(gate({ metric: 'rougeL', min: 0.4 }), metrics)).toMatchObject({
      status: 'passed',
      value: 0.42,
      rule: 'rougeL >= 0.4',
    });
    expect(checkGate(gate({ metric: 'rougeL', min: 0.5 }), metrics)).toMatchObject({
      status: 'failed',
      reason: 'rougeL >= 0.5: tuned 0.42',
    });
    expect(checkGate(gate({ metric: 'bleu', min: 10, max: 11 }), metrics)).toMatchObject({
      status: 'failed',
      rule: 'bleu >= 10 and <= 11',
    });
  });

  it('relative gates resolve the threshold from the baseline plus the margin', () => {
    expect(checkGate(gate({ metric: 'rougeL', relativeTo: 'retrieval' }), metrics)).toMatchObject({ status: 'passed', threshold: 0.35 });
    const failed = checkGate(gate({ metric: 'rougeL', relativeTo: 'retrieval', margin: 0.1 }), metrics);
    expect(failed.status).toBe('failed');
    expect(failed.threshold).toBeCloseTo(0.45);
    expect(failed.reason).toBe('rougeL >= retrieval + 0.1 (0.45): tuned 0.42');
    expect(checkGate(gate({ metric: 'factualAccuracy', relativeTo: 'retrieval' }), metrics).status).toBe('failed');
  });

  it('perplexity is better when lower: the margin is how much lower, negative allows a rise', () => {
    expect(checkGate(gate({ metric: 'perplexity', relativeTo: 'base' }), metrics)).toMatchObject({ status: 'failed', threshold: 20 });
    const allowed = checkGate(gate({ metric: 'perplexity', relativeTo: 'base', margin: -2 }), metrics);
    expect(allowed).toMatchObject({ status: 'passed', threshold: 22, rule: 'perplexity <= base + 2 (22)' });
    expect(checkGate(gate({ metric: 'perplexity', max: 20.5 }), metrics).status).toBe('failed');
  });

  it('a metric nobody measured fails the gate and says so', () => {
    expect(checkGate(gate({ metric: 'chrf', min: 1 }), metrics)).toMatchObject({
      status: 'failed',
      reason: 'chrf >= 1: the tuned system has no chrf',
    });
    expect(checkGate(gate({ metric: 'rougeL', relativeTo: 'base' }), { tuned: { rougeL: 0.5 } })).toMatchObject({
      status: 'failed',
      reason: 'rougeL >= base: the base baseline has no rougeL',
    });
  });

  it('satisfaction waits for human review; a failed gate means not promoted, with every reason', () => {
    const verdict = checkGates(
      [
        gate({ metric: 'satisfaction', min: 0.9 }),
        gate({ metric: 'rougeL', relativeTo: 'base' }),
        gate({ metric: 'factualAccuracy', relativeTo: 'retrieval' }),
        gate({ metric: 'bleu', min: 20 }),
      ],
      metrics,
    );
    expect(verdict.results.map((r) => r.status)).toEqual(['pending', 'passed', 'failed', 'failed']);
    expect(verdict.verdict).toBe('not-promoted');
    expect(verdict.reasons).toEqual(['factualAccuracy >= retrieval (0.31): tuned 0.3', 'bleu >= 20: tuned 12']);
    expect(checkGates([], metrics)).toEqual({ verdict: 'candidate', system: 'tuned', results: [], reasons: [] });
    expect(checkGates([gate({ metric: 'rougeL', min: 0.1 })], metrics).verdict).toBe('candidate');
  });

  it('an unreviewed satisfaction gate leaves the run awaiting review, never a promotion candidate', () => {
    const verdict = checkGates([gate({ metric: 'satisfaction', min: 0.9 }), gate({ metric: 'rougeL', min: 0.1 })], metrics);
    expect(verdict.results.map((r) => r.status)).toEqual(['pending', 'passed']);
    expect(verdict.verdict).toBe('awaiting-review');
    expect(verdict.reasons).toEqual([]);
    // Once reviewers have decided, the same gate passes or fails like any other.
    expect(checkGates([gate({ metric: 'satisfaction', min: 0.9 })], { tuned: { satisfaction: 0.95 } }).verdict).toBe('candidate');
    expect(checkGates([gate({ metric: 'satisfaction', min: 0.9 })], { tuned: { satisfaction: 0.5 } }).verdict).toBe('not-promoted');
  });
});
