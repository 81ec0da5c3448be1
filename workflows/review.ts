/**
 * Human review, a durable gate: after the automatic gates pass, `review.sampleSize` test answers of
 * the served system wait for reviewers. Each verdict arrives as the `review` Update, checked before it
 * is accepted (an unknown item, a second vote by the same reviewer on an item, a vote after the review
 * closed: each rejected with its reason); the `reviewStatus` query says where it stands. When every
 * item has a vote, satisfaction is the share of votes that accept, with a Wilson 95% interval; the
 * review passes when it reaches `review.satisfactionTarget`. Past `review.timeout` it expires.
 * Reviewers and their verdicts are in the history (the Updates) and in run.json.
 */
import { msToNumber } from '@temporalio/common/lib/time';
import { ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import type { PipelineConfig } from '../schemas/config';
import type { EvaluationSummary, MetricTable, ReviewItem, ReviewState, ReviewVote } from '../schemas/manifests';
import { VoteRefusal } from '../schemas/errors';
import { checkGates } from './gates';
import { reviewQuery, reviewUpdate } from './definitions';

/** The Wilson score interval (95%) of `accepted` successes in `total` votes. */
export function wilsonInterval(accepted: number, total: number, z = 1.96): [number, number] {
  if (total === 0) return [0, 1];
  const p = accepted / total;
  const z2 = z * z;
  const center = (p + z2 / (2 * total)) / (1 + z2 / total);
  const half = (z * Math.sqrt((p * (1 - p)) / total + z2 / (4 * total * total))) / (1 + z2 / total);
  return [Math.max(0, center - half), Math.min(1, center + half)];
}

/** Why a vote cannot be taken now, or null when it can. */
export function voteProblem(state: ReviewState, vote: ReviewVote): { type: VoteRefusal; message: string } | null {
  const refuse = (type: VoteRefusal, message: string) => ({ type, message });
  if (state.status !== 'open') return refuse(VoteRefusal.closed, `the review is closed (${state.status}); no more votes are taken`);
  if (!vote || typeof vote.itemId !== 'string' || typeof vote.reviewer !== 'string' || !vote.reviewer.trim())
    return refuse(VoteRefusal.invalid, 'a vote names its itemId and its reviewer');
  if (!state.items.some((item) => item.id === vote.itemId)) return refuse(VoteRefusal.unknownItem, `no item ${vote.itemId} in this review`);
  if (!['accept', 'reject', 'correct'].includes(vote.verdict))
    return refuse(VoteRefusal.invalid, `verdict ${String(vote.verdict)}: accept, reject or correct`);
  if (vote.verdict === 'correct' && !vote.correction?.trim())
    return refuse(VoteRefusal.invalid, 'a correct verdict carries the corrected answer');
  if (state.votes.some((v) => v.itemId === vote.itemId && v.reviewer === vote.reviewer))
    return refuse(VoteRefusal.duplicate, `${vote.reviewer} has voted on ${vote.itemId} already`);
  return null;
}

/** The state with the counts derived from its votes. */
function tally(state: ReviewState): ReviewState {
  const rated = new Set(state.votes.map((v) => v.itemId)).size;
  const accepted = state.votes.filter((v) => v.verdict === 'accept').length;
  const total = state.votes.length;
  return {
    ...state,
    rated,
    satisfaction: total ? accepted / total : null,
    interval: total ? (wilsonInterval(accepted, total).map((x) => Math.round(x * 1e4) / 1e4) as [number, number]) : null,
  };
}

/**
 * The evaluation with the review's verdict: the satisfaction in the served system's metrics, every
 * gate checked again (a satisfaction gate is decided now), and a review below its target failing it.
 */
export function reviewedEvaluation(evaluation: EvaluationSummary, review: ReviewState): EvaluationSummary {
  const served = evaluation.gate.system;
  const metrics: MetricTable = { ...evaluation.metrics, [served]: { ...evaluation.metrics[served], satisfaction: review.satisfaction } };
  const gate = checkGates(
    evaluation.gate.results.map((r) => r.gate),
    metrics,
    served,
  );
  if (review.status === 'failed') {
    gate.verdict = 'not-promoted';
    gate.reasons.push(
      `review: satisfaction ${review.satisfaction?.toFixed(3)} is below the target ${review.target} (${reviewSummary(review)})`,
    );
  }
  if (review.status === 'expired') {
    gate.verdict = 'not-promoted';
    gate.reasons.push(`review expired: ${review.rated} of ${review.items.length} answers rated by ${review.deadline}`);
  }
  return { ...evaluation, metrics, gate };
}

/** The review in one line, e.g. `45 of 50 accepted, satisfaction 0.900 (95% 0.787-0.957), target 0.9`. */
export function reviewSummary(review: ReviewState): string {
  const accepted = review.votes.filter((v) => v.verdict === 'accept').length;
  const interval = review.interval ? ` (95% ${review.interval[0].toFixed(3)}-${review.interval[1].toFixed(3)})` : '';
  const satisfaction = review.satisfaction === null ? 'no votes' : `satisfaction ${review.satisfaction.toFixed(3)}${interval}`;
  return `${review.status}: ${accepted} of ${review.votes.length} votes accept, ${review.rated} of ${review.items.length} answers rated, ${satisfaction}, target ${review.target}`;
}

/** Waits for the reviewers of `items`: every item voted on (passed or failed against the target), or the timeout (expired). */
export async function humanReview(config: PipelineConfig, items: ReviewItem[]): Promise<ReviewState> {
  const timeoutMs = msToNumber(config.review.timeout as Parameters<typeof msToNumber>[0]);
  let state: ReviewState = {
    status: 'open',
    target: config.review.satisfactionTarget,
    deadline: new Date(Date.now() + timeoutMs).toISOString(),
    items,
    votes: [],
    rated: 0,
    satisfaction: null,
    interval: null,
  };
  setHandler(reviewQuery, () => state);
  setHandler(
    reviewUpdate,
    (vote) => {
      state = tally({ ...state, votes: [...state.votes, { ...vote, at: new Date().toISOString() }] });
      return state;
    },
    {
      validator: (vote) => {
        const problem = voteProblem(state, vote);
        if (problem) throw ApplicationFailure.create({ ...problem, nonRetryable: true });
      },
    },
  );
  const complete = await condition(() => state.rated === items.length, timeoutMs);
  const passed = complete && (state.satisfaction ?? 0) >= state.target;
  state = { ...state, status: !complete ? 'expired' : passed ? 'passed' : 'failed' };
  return state;
}
