/**
 * `tuneline review status | items | vote`: human review of a run's sampled answers from the command
 * line. A vote is the run's `review` Update: the workflow checks it and says why when it refuses it.
 * `tuneline review invite | revoke | reviewers`: the tokens reviewers open the review page of
 * `tuneline serve` with, kept (hashed) in the pipeline's storage.feedback file.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { whoAmI } from '../../activities/registry';
import { ReviewVote, type ReviewState } from '../../schemas/manifests';
import { reviewQuery, reviewUpdate } from '../../workflows/definitions';
import { reviewSummary } from '../../workflows/review';
import { ReviewerStore } from '../../serve/reviewers';
import { UserError, requireValidConfig } from '../config';
import { printTable } from '../table';
import { withSession } from '../session';

const withReview = <T>(runId: string, body: (handle: WorkflowHandle) => Promise<T>): Promise<T> =>
  withSession((client) => body(client.workflow.getHandle(runId)), { clientOnly: true, start: false });

async function reviewState(runId: string): Promise<ReviewState> {
  return withReview(runId, async (handle) => {
    try {
      return await handle.query(reviewQuery);
    } catch (err) {
      throw new UserError(
        `${runId} has no review open: ${(err as Error).message.split('\n')[0]} (a run reviews once its automatic gates pass; tuneline status ${runId})`,
      );
    }
  });
}

/** The reviewer tokens of the pipeline file's storage.feedback, or of `--db`. */
function reviewerStore(opts: { config: string; db?: string }): ReviewerStore {
  if (opts.db) return new ReviewerStore(resolve(opts.db));
  const { config, configDir } = requireValidConfig(opts.config);
  return new ReviewerStore(resolve(configDir, config.storage.feedback));
}

export function registerReview(program: Command): void {
  const review = program.command('review').description("Human review of a run's sampled answers: where it stands, the items, votes.");

  review
    .command('status')
    .description('Where the review stands: votes, items rated, satisfaction with its 95% interval, target, deadline.')
    .argument('<run-id>')
    .option('--json', 'print the whole review state')
    .action(async (runId: string, opts: { json?: boolean }) => {
      const state = await reviewState(runId);
      if (opts.json) return console.log(JSON.stringify(state, null, 2));
      console.log(`${runId}: review ${reviewSummary(state)}; ${state.status === 'open' ? `open until ${state.deadline}` : 'closed'}`);
    });

  review
    .command('items')
    .description('The sampled answers: question, the model answer, the reference, and the votes each has.')
    .argument('<run-id>')
    .option('--pending', 'only the items nobody has voted on')
    .option('--json', 'print a JSON array')
    .action(async (runId: string, opts: { pending?: boolean; json?: boolean }) => {
      const state = await reviewState(runId);
      const items = state.items
        .map((item) => ({
          ...item,
          votes: state.votes.filter((v) => v.itemId === item.id).map(({ reviewer, verdict }) => ({ reviewer, verdict })),
        }))
        .filter((item) => !opts.pending || item.votes.length === 0);
      if (opts.json) return console.log(JSON.stringify(items));
      for (const item of items)
        console.log(
          `[${item.id}] ${item.votes.length ? item.votes.map((v) => `${v.verdict} by ${v.reviewer}`).join(', ') : 'no vote yet'}\n` +
            `  question:  ${item.question}\n  answer:    ${item.answer}\n  reference: ${item.reference}\n`,
        );
    });

  review
    .command('vote')
    .description(
      'Vote on one item: accept, reject, or correct with the right answer. Refused, with why, for an unknown item, a second vote, or a closed review.',
    )
    .argument('<run-id>')
    .argument('<item-id>')
    .argument('<verdict>', 'accept, reject or correct')
    .option('--correction <text>', 'the right answer (with correct)')
    .option('--comment <text>', 'why')
    .option('--reviewer <name>', 'who votes', whoAmI())
    .action(async (runId: string, itemId: string, verdict: string, opts: { correction?: string; comment?: string; reviewer: string }) => {
      const parsed = ReviewVote.safeParse({ itemId, verdict, reviewer: opts.reviewer, correction: opts.correction, comment: opts.comment });
      if (!parsed.success) throw new UserError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n'));
      const state = await withReview(runId, async (handle) => {
        try {
          return await handle.executeUpdate(reviewUpdate, { args: [parsed.data] });
        } catch (err) {
          if (err instanceof WorkflowUpdateFailedError) throw new UserError(`vote refused: ${err.cause?.message ?? err.message}`);
          // The run ended (its review closed with it), or it does not exist.
          throw new UserError(`vote not counted: ${(err as Error).message.split('\n')[0]} (tuneline status ${runId})`);
        }
      });
      console.log(`Counted. ${reviewSummary(state)}.`);
    });

  review
    .command('invite')
    .description('A reviewer token for the review page of tuneline serve (/review): printed once, kept only as a hash.')
    .argument('<reviewer>', 'the name votes are recorded under')
    .option('-c, --config <file>', 'pipeline file whose storage.feedback keeps the tokens', 'temporal.yaml')
    .option('--db <file>', 'the SQLite file instead (the one tuneline serve --feedback-db names)')
    .option('--url <url>', "the chat server's address, for the link", 'http://127.0.0.1:8000')
    .action((reviewer: string, opts: { config: string; db?: string; url: string }) => {
      if (!reviewer.trim()) throw new UserError('name the reviewer: tuneline review invite <name>');
      const store = reviewerStore(opts);
      const token = store.invite(reviewer.trim(), whoAmI());
      store.close();
      console.log(
        `Reviewer token for ${reviewer.trim()} (shown once; tuneline review revoke ${reviewer.trim()} withdraws it):\n  ${token}`,
      );
      console.log(`Review page: ${opts.url.replace(/\/+$/, '')}/review#token=${token}`);
    });

  review
    .command('revoke')
    .description('Withdraw every token of a reviewer; the review page refuses them at once.')
    .argument('<reviewer>')
    .option('-c, --config <file>', 'pipeline file whose storage.feedback keeps the tokens', 'temporal.yaml')
    .option('--db <file>', 'the SQLite file instead')
    .action((reviewer: string, opts: { config: string; db?: string }) => {
      const store = reviewerStore(opts);
      const revoked = store.revoke(reviewer);
      store.close();
      if (revoked === 0) throw new UserError(`${reviewer} has no live token (tuneline review reviewers lists them)`);
      console.log(`Revoked ${revoked} token(s) of ${reviewer}.`);
    });

  review
    .command('reviewers')
    .description('Every reviewer token: whose, made by whom and when, revoked or live.')
    .option('-c, --config <file>', 'pipeline file whose storage.feedback keeps the tokens', 'temporal.yaml')
    .option('--db <file>', 'the SQLite file instead')
    .action((opts: { config: string; db?: string }) => {
      const store = reviewerStore(opts);
      const reviewers = store.list();
      store.close();
      if (reviewers.length === 0) return console.log('No reviewer tokens yet: tuneline review invite <name> makes one.');
      printTable([
        ['REVIEWER', 'MADE', 'BY', 'STATE'],
        ...reviewers.map((r) => [r.name, r.createdAt, r.createdBy, r.revokedAt ? `revoked ${r.revokedAt}` : 'live']),
      ]);
    });
}
