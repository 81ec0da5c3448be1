/**
 * The review API behind the review page (`/review`): reviewers, each with a token from `tuneline
 * review invite`, see a run's sampled answers one at a time and vote on them. The server knows
 * nothing of Temporal: a `ReviewBackend` reads a run's review and sends each vote to the run as its
 * `review` Update, which decides whether the vote counts (cli/review-backend.ts on a real cluster).
 *
 * - `GET /v1/reviews`: the reviews open now, with where each stands.
 * - `GET /v1/reviews/:run`: one review as this reviewer sees it, with the next item nobody has
 *   judged yet. Other reviewers' verdicts are not shown, so none sways another.
 * - `POST /v1/reviews/:run/votes`: `{item_id, verdict: accept|reject|correct, correction?, comment?}`;
 *   201 with the review as it now stands. A vote the run refuses gets its reason: 404 for an unknown
 *   item, 409 for a second vote or a closed review, 400 for an incomplete one.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ReviewItem, ReviewState, ReviewVote } from '../schemas/manifests';
import { VoteRefusal } from '../schemas/errors';
import { ApiError, invalidRequest, issueLines } from './api-error';
import type { ReviewerStore } from './reviewers';

/** A vote the run refused, with the refusal's type and the run's reason. */
export class VoteRefused extends Error {
  constructor(
    readonly type: VoteRefusal,
    message: string,
  ) {
    super(message);
  }
}

export interface ReviewBackend {
  /** The runs of the served pipeline whose review is open, with their reviews. */
  open(): Promise<Array<{ runId: string; review: ReviewState }>>;
  /** A run's review, open or closed; null when the run is not this pipeline's or has reached no review. */
  state(runId: string): Promise<ReviewState | null>;
  /** Sends a vote to the run; throws VoteRefused when the run does not count it. */
  vote(runId: string, vote: ReviewVote): Promise<ReviewState>;
}

const VoteRequest = z.strictObject({
  item_id: z.string().min(1),
  verdict: z.enum(['accept', 'reject', 'correct']),
  correction: z.string().trim().min(1).max(8000).optional(),
  comment: z.string().max(4000).optional(),
});

const REFUSAL_STATUS: Record<VoteRefusal, [number, 'invalid_request_error' | 'not_found_error' | 'conflict_error']> = {
  [VoteRefusal.unknownItem]: [404, 'not_found_error'],
  [VoteRefusal.duplicate]: [409, 'conflict_error'],
  [VoteRefusal.closed]: [409, 'conflict_error'],
  [VoteRefusal.invalid]: [400, 'invalid_request_error'],
};

/** Where a review stands, without anyone's verdicts. */
function standing(runId: string, review: ReviewState) {
  return {
    run_id: runId,
    status: review.status,
    target: review.target,
    deadline: review.deadline,
    items: review.items.length,
    rated: review.rated,
    votes: review.votes.length,
    satisfaction: review.satisfaction,
    interval: review.interval,
  };
}

/**
 * The review as `reviewer` sees it: where it stands, their votes, and the next item: the first one
 * nobody has judged (the review closes once each has a vote, so a second opinion would race it).
 */
export function reviewerView(runId: string, review: ReviewState, reviewer: string) {
  const voted = new Set(review.votes.map((v) => v.itemId));
  const next: ReviewItem | undefined = review.items.find((item) => !voted.has(item.id));
  return {
    ...standing(runId, review),
    reviewer,
    your_votes: review.votes.filter((v) => v.reviewer === reviewer).length,
    next: review.status === 'open' && next ? { ...next, position: review.items.indexOf(next) + 1 } : null,
  };
}

export function registerReviewRoutes(
  app: FastifyInstance,
  { backend, reviewers }: { backend: ReviewBackend; reviewers: ReviewerStore },
): void {
  /** The reviewer a request's `X-Reviewer-Token` names, or a 401 saying how to get one. */
  const reviewerOf = (req: FastifyRequest): string => {
    const token = req.headers['x-reviewer-token'];
    if (typeof token !== 'string' || !token.trim())
      throw new ApiError(
        401,
        'no reviewer token: send it as X-Reviewer-Token (tuneline review invite <name> makes one)',
        'authentication_error',
        'missing_reviewer_token',
      );
    const name = reviewers.reviewerOf(token.trim());
    if (!name) throw new ApiError(401, 'the reviewer token is unknown or revoked', 'authentication_error', 'invalid_reviewer_token');
    return name;
  };

  /** A backend call, its failures to reach the runs as 503s (a refused vote is not such a failure). */
  const reach = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (err) {
      if (err instanceof VoteRefused || err instanceof ApiError) throw err;
      app.log.error(err);
      throw new ApiError(
        503,
        `the reviews cannot be reached: ${(err as Error).message.split('\n')[0]}`,
        'server_error',
        'review_unavailable',
      );
    }
  };

  const reviewOf = async (runId: string) => {
    const review = await reach(() => backend.state(runId));
    if (!review)
      throw new ApiError(
        404,
        `run ${runId} has no review: it is not a run of this pipeline, or it has not reached review`,
        'not_found_error',
        'no_review',
        'run',
      );
    return review;
  };

  app.get('/v1/reviews', async (req) => {
    const reviewer = reviewerOf(req);
    const open = await reach(() => backend.open());
    return { object: 'list', reviewer, data: open.map(({ runId, review }) => reviewerView(runId, review, reviewer)) };
  });

  app.get<{ Params: { run: string } }>('/v1/reviews/:run', async (req) => {
    const reviewer = reviewerOf(req);
    return reviewerView(req.params.run, await reviewOf(req.params.run), reviewer);
  });

  app.post<{ Params: { run: string } }>('/v1/reviews/:run/votes', async (req, reply) => {
    const reviewer = reviewerOf(req);
    const parsed = VoteRequest.safeParse(req.body);
    if (!parsed.success) throw invalidRequest(issueLines(parsed.error));
    const { item_id: itemId, verdict, correction, comment } = parsed.data;
    await reviewOf(req.params.run);
    try {
      const review = await reach(() => backend.vote(req.params.run, { itemId, reviewer, verdict, correction, comment }));
      return reply.status(201).send(reviewerView(req.params.run, review, reviewer));
    } catch (err) {
      if (!(err instanceof VoteRefused)) throw err;
      const [status, type] = REFUSAL_STATUS[err.type];
      throw new ApiError(
        status,
        `vote not counted: ${err.message}`,
        type,
        err.type,
        err.type === VoteRefusal.unknownItem ? 'item_id' : null,
      );
    }
  });
}
