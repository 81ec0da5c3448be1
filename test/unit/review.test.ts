import { describe, expect, it } from 'vitest';
import { Gate } from '../../schemas/config';
import type { EvaluationSummary, ReviewState, ReviewVote } from '../../schemas/manifests';
import { checkGates } from '../../workflows/gates';
import { reviewSummary, reviewedEvaluation, voteProblem, wilsonInterval } from '../../workflows/review';

const items = [1, 2, 3].map((n) => ({ id: `q${n}`, question: `Q${n}?`, answer: `A${n}.`, reference: `R${n}.` }));
const open = (votes: ReviewState['votes'] = []): ReviewState => ({
  status: 'open',
  target: 0.9,
  deadline: '2026-12-05T00:00:00.000Z',
  items,
  votes,
  rated: new Set(votes.map((v) => v.itemId)).size,
  satisfaction: null,
  interval: null,
});
const vote = (over: Partial<ReviewVote> = {}): ReviewVote => ({ itemId: 'q1', reviewer: 'ana', verdict: 'accept', ...over });

describe('human review', () => {
  it('has the Wilson 95% interval of the satisfaction', () => {
    const [low, high] = wilsonInterval(45, 50);
    expect(low).toBeCloseTo(0.7864, 3);
    expect(high).toBeCloseTo(0.9565, 3);
    expect(wilsonInterval(4, 4)[0]).toBeCloseTo(0.5101, 3);
    expect(wilsonInterval(4, 4)[1]).toBe(1);
    expect(wilsonInterval(0, 0)).toEqual([0, 1]);
  });

  it('takes a vote only for a known item, once per reviewer and item, with a correction when it corrects, while open', () => {
    expect(voteProblem(open(), vote())).toBeNull();
    expect(voteProblem(open(), vote({ itemId: 'q9' }))).toEqual({ type: 'UnknownReviewItem', message: 'no item q9 in this review' });
    expect(voteProblem(open(), vote({ verdict: 'correct' }))).toEqual({
      type: 'InvalidVote',
      message: 'a correct verdict carries the corrected answer',
    });
    expect(voteProblem(open(), vote({ verdict: 'correct', correction: 'R1.' }))).toBeNull();
    expect(voteProblem(open(), vote({ reviewer: ' ' }))?.message).toBe('a vote names its itemId and its reviewer');
    const voted = open([{ ...vote(), at: '2026-12-02T00:00:00.000Z' }]);
    expect(voteProblem(voted, vote({ verdict: 'reject' }))).toEqual({ type: 'DuplicateVote', message: 'ana has voted on q1 already' });
    expect(voteProblem(voted, vote({ reviewer: 'bo' }))).toBeNull();
    expect(voteProblem({ ...voted, status: 'passed' }, vote({ reviewer: 'bo' }))).toEqual({
      type: 'ReviewClosed',
      message: 'the review is closed (passed); no more votes are taken',
    });
  });

  it('decides the satisfaction gate and fails a review below its target', () => {
    const gates = [Gate.parse({ metric: 'rougeL', min: 0.1 }), Gate.parse({ metric: 'satisfaction', min: 0.5 })];
    const metrics = { tuned: { rougeL: 0.4 } };
    const evaluation: EvaluationSummary = { rows: 10, metrics, gate: checkGates(gates, metrics), files: {} };
    expect(evaluation.gate.verdict).toBe('awaiting-review');
    const at = '2026-12-02T00:00:00.000Z';
    const votes = (verdicts: ReviewVote['verdict'][]) =>
      verdicts.map((verdict, n) => ({
        itemId: `q${n + 1}`,
        reviewer: 'ana',
        verdict,
        at,
        ...(verdict === 'correct' ? { correction: 'x' } : {}),
      }));
    const passed: ReviewState = {
      ...open(votes(['accept', 'accept', 'accept'])),
      status: 'passed',
      rated: 3,
      satisfaction: 1,
      interval: [0.4385, 1],
    };
    const ok = reviewedEvaluation(evaluation, passed);
    expect(ok.gate.verdict).toBe('candidate');
    expect(ok.metrics.tuned!.satisfaction).toBe(1);
    expect(ok.gate.results.map((r) => r.status)).toEqual(['passed', 'passed']);

    const failed: ReviewState = {
      ...open(votes(['accept', 'reject', 'correct'])),
      status: 'failed',
      rated: 3,
      satisfaction: 1 / 3,
      interval: [0.0615, 0.7923],
    };
    const no = reviewedEvaluation(evaluation, failed);
    expect(no.gate.verdict).toBe('not-promoted');
    expect(no.gate.reasons).toEqual([
      'satisfaction >= 0.5: tuned 0.3333',
      'review: satisfaction 0.333 is below the target 0.9 (failed: 1 of 3 votes accept, 3 of 3 answers rated, satisfaction 0.333 (95% 0.061-0.792), target 0.9)',
    ]);
    const expired: ReviewState = { ...open(votes(['accept'])), status: 'expired', rated: 1, satisfaction: 1, interval: [0.2065, 1] };
    expect(reviewedEvaluation(evaluation, expired).gate.reasons.at(-1)).toBe(
      'review expired: 1 of 3 answers rated by 2026-12-05T00:00:00.000Z',
    );
    expect(reviewSummary(open())).toBe('open: 0 of 0 votes accept, 0 of 3 answers rated, no votes, target 0.9');
  });
});
