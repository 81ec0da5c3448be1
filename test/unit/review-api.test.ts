/**
 * The review page's API on a backend that decides votes as the workflow does (voteProblem): reviewer
 * tokens, the next item for each reviewer, and each refusal with its status code and reason. The
 * real run behind it is in test/integration/training.test.ts (the page in Chromium).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReviewState } from '../../schemas/manifests';
import { VoteRefused, type ReviewBackend } from '../../serve/review';
import { ReviewerStore } from '../../serve/reviewers';
import { createChatServer, type ChatServer } from '../../serve/server';
import { voteProblem } from '../../workflows/review';

const items = [1, 2, 3].map((n) => ({ id: `q${n}`, question: `Q${n}?`, answer: `A${n}.`, reference: `R${n}.` }));

/** One run, `run-1`, whose review takes votes as the workflow's validator does. */
function fakeRuns(): ReviewBackend & { review: ReviewState; down: boolean } {
  const runs = {
    down: false,
    review: {
      status: 'open',
      target: 0.9,
      deadline: '2026-12-05T00:00:00.000Z',
      items,
      votes: [],
      rated: 0,
      satisfaction: null,
      interval: null,
    } as ReviewState,
    async open() {
      if (runs.down) throw new Error('connect ECONNREFUSED 127.0.0.1:7233');
      return [{ runId: 'run-1', review: runs.review }];
    },
    async state(runId: string) {
      return runId === 'run-1' ? runs.review : null;
    },
    async vote(_runId: string, vote: Parameters<ReviewBackend['vote']>[1]) {
      const problem = voteProblem(runs.review, vote);
      if (problem) throw new VoteRefused(problem.type, problem.message);
      const votes = [...runs.review.votes, { ...vote, at: '2026-12-02T00:00:00.000Z' }];
      runs.review = { ...runs.review, votes, rated: new Set(votes.map((v) => v.itemId)).size };
      return runs.review;
    },
  };
  return runs;
}

describe('the review API', () => {
  const file = join(mkdtempSync(join(tmpdir(), 'tuneline-reviewers-')), 'feedback.sqlite');
  const reviewers = new ReviewerStore(file);
  const runs = fakeRuns();
  let server: ChatServer;
  let ana: string;
  let bo: string;

  beforeAll(async () => {
    ana = reviewers.invite('ana', 'ops@host');
    bo = reviewers.invite('bo', 'ops@host');
    server = await createChatServer(null, { review: { backend: runs, reviewers } });
  });
  afterAll(async () => {
    await server.shutdown();
    reviewers.close();
  });

  const call = (method: 'GET' | 'POST', url: string, token?: string, payload?: object) =>
    server.app.inject({ method, url, headers: token ? { 'x-reviewer-token': token } : {}, ...(payload ? { payload } : {}) });

  it('keeps only a hash of each token, knows whose it is, and refuses it once revoked', () => {
    expect(ana).toMatch(/^rvw_[A-Za-z0-9_-]{32}$/);
    expect(reviewers.reviewerOf(ana)).toBe('ana');
    expect(reviewers.reviewerOf('rvw_made-up')).toBeNull();
    const carol = reviewers.invite('carol', 'ops@host');
    expect(reviewers.revoke('carol')).toBe(1);
    expect(reviewers.reviewerOf(carol)).toBeNull();
    expect(reviewers.list().map((r) => [r.name, r.revokedAt === null])).toEqual([
      ['ana', true],
      ['bo', true],
      ['carol', false],
    ]);
    for (const token of [ana, bo, carol]) expect(readFileSync(file).includes(token)).toBe(false);
  });

  it('asks for a reviewer token, and refuses an unknown one', async () => {
    const none = await call('GET', '/v1/reviews');
    expect(none.statusCode).toBe(401);
    expect(none.json().error).toMatchObject({ code: 'missing_reviewer_token', type: 'authentication_error' });
    expect(none.json().error.message).toContain('tuneline review invite');
    const wrong = await call('GET', '/v1/reviews', 'rvw_made-up');
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.code).toBe('invalid_reviewer_token');
  });

  it("shows each reviewer the next item nobody has judged, never another reviewer's verdicts, and counts votes", async () => {
    const list = await call('GET', '/v1/reviews', ana);
    expect(list.statusCode).toBe(200);
    expect(list.json()).toMatchObject({
      reviewer: 'ana',
      data: [{ run_id: 'run-1', items: 3, rated: 0, next: { id: 'q1', position: 1 } }],
    });

    const voted = await call('POST', '/v1/reviews/run-1/votes', ana, { item_id: 'q1', verdict: 'accept', comment: 'fine' });
    expect(voted.statusCode).toBe(201);
    expect(voted.json()).toMatchObject({
      rated: 1,
      votes: 1,
      your_votes: 1,
      next: { id: 'q2', question: 'Q2?', answer: 'A2.', reference: 'R2.' },
    });
    expect(runs.review.votes.at(-1)).toMatchObject({ itemId: 'q1', reviewer: 'ana', verdict: 'accept', comment: 'fine' });
    // bo is offered q2 (nobody judged it), not q1; the view names counts, not who voted what.
    const seen = (await call('GET', '/v1/reviews/run-1', bo)).json();
    expect(seen.next.id).toBe('q2');
    expect(JSON.stringify(seen)).not.toContain('ana');

    const corrected = await call('POST', '/v1/reviews/run-1/votes', bo, { item_id: 'q2', verdict: 'correct', correction: 'B2.' });
    expect(corrected.statusCode).toBe(201);
    expect(runs.review.votes.at(-1)).toMatchObject({ reviewer: 'bo', verdict: 'correct', correction: 'B2.' });
  });

  it('refuses each vote the run does not count with its reason and status: unknown item, second vote, incomplete, closed', async () => {
    const refusal = async (token: string, payload: object, url = '/v1/reviews/run-1/votes') => {
      const response = await call('POST', url, token, payload);
      return [response.statusCode, response.json().error.code, response.json().error.message];
    };
    expect(await refusal(ana, { item_id: 'q9', verdict: 'accept' })).toEqual([
      404,
      'UnknownReviewItem',
      'vote not counted: no item q9 in this review',
    ]);
    expect(await refusal(ana, { item_id: 'q1', verdict: 'reject' })).toEqual([
      409,
      'DuplicateVote',
      'vote not counted: ana has voted on q1 already',
    ]);
    expect(await refusal(ana, { item_id: 'q3', verdict: 'correct' })).toEqual([
      400,
      'InvalidVote',
      'vote not counted: a correct verdict carries the corrected answer',
    ]);
    expect(await refusal(ana, { item_id: 'q3', verdict: 'maybe', extra: 1 })).toEqual([
      400,
      'invalid_request',
      expect.stringMatching(/^verdict: .*; body: Unrecognized key: "extra"$/),
    ]);
    expect(await refusal(ana, { item_id: 'q3', verdict: 'accept' }, '/v1/reviews/run-9/votes')).toEqual([
      404,
      'no_review',
      'run run-9 has no review: it is not a run of this pipeline, or it has not reached review',
    ]);
    runs.review = { ...runs.review, status: 'passed' };
    expect(await refusal(bo, { item_id: 'q3', verdict: 'accept' })).toEqual([
      409,
      'ReviewClosed',
      'vote not counted: the review is closed (passed); no more votes are taken',
    ]);
    expect((await call('GET', '/v1/reviews/run-1', bo)).json()).toMatchObject({ status: 'passed', next: null });
  });

  it('says when the runs cannot be reached (503), and serves the page with a strict policy', async () => {
    runs.down = true;
    const down = await call('GET', '/v1/reviews', ana);
    expect(down.statusCode).toBe(503);
    expect(down.json().error).toMatchObject({ code: 'review_unavailable', message: expect.stringContaining('ECONNREFUSED') });
    const page = await call('GET', '/review');
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-security-policy']).toBe("default-src 'self'");
    expect(page.body).toContain('<script src="/review.js"></script>');
  });

  it('has no review page on a server without review', async () => {
    const plain = await createChatServer(null);
    expect((await plain.app.inject({ method: 'GET', url: '/review' })).statusCode).toBe(404);
    await plain.shutdown();
  });
});
