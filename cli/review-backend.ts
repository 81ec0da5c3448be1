/**
 * The review page's backend on Temporal (serve/review.ts): the runs of one pipeline that wait in
 * review (found by their search attributes), each review read with the `reviewStatus` query, and
 * each vote sent as the run's `review` Update, whose validator decides whether it counts.
 *
 * The connection opens at the first request, not when the server starts: a chat server runs without
 * Temporal, and one started before any run finds the run's server when a reviewer comes.
 */
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { VoteRefusal } from '../schemas/errors';
import type { ReviewState } from '../schemas/manifests';
import { VoteRefused, type ReviewBackend } from '../serve/review';
import { SearchAttributes, reviewQuery, reviewUpdate } from '../workflows/definitions';
import { openSession, type TemporalSession } from './session';

const quoted = (value: string) => `"${value.replace(/["\\]/g, '\\$&')}"`;
/** The pipeline workflow's type (workflows/pipeline.ts); the stage workflows it starts have no review. */
const WORKFLOW_TYPE = 'finetunePipeline';

/** Reviews of `pipeline`'s runs through `client()`; `reset()` drops a connection that failed, so the next call opens another. */
export function temporalReviews(
  pipeline: string,
  connection: { client: () => Promise<Client>; reset: () => Promise<void> },
): ReviewBackend {
  const reaching = async <T>(call: (client: Client) => Promise<T>): Promise<T> => {
    try {
      return await call(await connection.client());
    } catch (err) {
      if (!(err instanceof VoteRefused)) await connection.reset();
      throw err;
    }
  };

  /** The run's review; null when it is not this pipeline's, has no review, or does not exist. */
  const state = (runId: string) =>
    reaching(async (client): Promise<ReviewState | null> => {
      const handle = client.workflow.getHandle(runId);
      try {
        const described = await handle.describe();
        if (described.type !== WORKFLOW_TYPE || described.typedSearchAttributes.get(SearchAttributes.pipeline) !== pipeline) return null;
        return await handle.query(reviewQuery);
      } catch (err) {
        // Not found, or a run that never reached review (its query has no handler).
        if (err instanceof WorkflowNotFoundError || /query|handler/i.test((err as Error).message)) return null;
        throw err;
      }
    });

  return {
    state,
    open: () =>
      reaching(async (client) => {
        const query =
          `WorkflowType = ${quoted(WORKFLOW_TYPE)} AND ExecutionStatus = "Running" AND ` +
          `${SearchAttributes.pipeline.name} = ${quoted(pipeline)} AND ${SearchAttributes.stage.name} = "review"`;
        const open: Array<{ runId: string; review: ReviewState }> = [];
        for await (const run of client.workflow.list({ query })) {
          const review = await client.workflow.getHandle(run.workflowId).query(reviewQuery);
          if (review.status === 'open') open.push({ runId: run.workflowId, review });
        }
        return open;
      }),
    vote: (runId, vote) =>
      reaching(async (client) => {
        try {
          return await client.workflow.getHandle(runId).executeUpdate(reviewUpdate, { args: [vote] });
        } catch (err) {
          if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure && err.cause.type)
            throw new VoteRefused(err.cause.type as VoteRefusal, err.cause.message);
          // The run ended between the read and the vote: its review closed with it.
          if (err instanceof WorkflowNotFoundError || /already completed/i.test((err as Error).message))
            throw new VoteRefused(VoteRefusal.closed, 'the run has ended; its review is closed');
          throw err;
        }
      }),
  };
}

/** A session opened at first use and kept, as a client only (it may use the embedded server a live run owns). */
export function lazySession(): { client: () => Promise<Client>; reset: () => Promise<void>; close: () => Promise<void> } {
  let session: Promise<TemporalSession> | null = null;
  const close = async () => {
    const open = session;
    session = null;
    if (open) await open.then((s) => s.close()).catch(() => {});
  };
  return {
    client: async () => {
      session ??= openSession({ clientOnly: true, start: false });
      try {
        return (await session).client;
      } catch (err) {
        session = null;
        throw err;
      }
    },
    reset: close,
    close,
  };
}
