/**
 * `tuneline serve`: the chat server (serve/server.ts) on a pipeline's production model, reloaded
 * without downtime when the production pointer moves, or on an export folder; with a pipeline, also
 * the review page for its runs waiting for human review.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { FeedbackStore } from '../../serve/feedback';
import { ReviewerStore } from '../../serve/reviewers';
import { DEFAULT_LIMITS, createChatServer, type ChatModel } from '../../serve/server';
import { openStore } from '../../activities/context';
import { loadExportModel, loadRunModel, watchProduction } from '../chat-model';
import { lazySession, temporalReviews } from '../review-backend';
import { productionManifest, runManifest } from '../models';
import { UserError, requireValidConfig } from '../config';

const whole = (value: string, flag: string, min = 1) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UserError(`${flag} ${value}: a whole number of at least ${min}`);
  return n;
};

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description("Serve the pipeline's production model: an OpenAI-compatible chat API (POST /v1/chat/completions, GET /v1/models).")
    .option('-c, --config <file>', 'pipeline file whose production model to serve', 'temporal.yaml')
    .option('--run <run-id>', "serve this run's model instead, with its retrieval (no reload when production moves)")
    .option('--export <dir>', 'serve this export folder instead (greedy answers, no retrieval)')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port', '8000')
    .option('--api-key <key...>', 'keys clients must send as Authorization: Bearer <key> (also TUNELINE_API_KEYS, comma-separated)')
    .option('--rate-limit <n>', 'chat requests per client per minute; 0 turns it off', String(DEFAULT_LIMITS.rateLimit!.max))
    .option('--max-concurrent <n>', 'answers generating at once; more wait in a queue', String(DEFAULT_LIMITS.maxConcurrent))
    .option('--max-tokens <n>', 'the most new tokens a request may ask for', String(DEFAULT_LIMITS.maxNewTokens))
    .option('--feedback-db <file>', 'SQLite file for answers and their ratings (default: storage.feedback of the pipeline file)')
    .option('--no-feedback', 'keep no answers and take no ratings')
    .option('--no-review', 'no review page (/review) for runs waiting for human review')
    .action(
      async (opts: {
        config: string;
        run?: string;
        export?: string;
        host: string;
        port: string;
        apiKey?: string[];
        rateLimit: string;
        maxConcurrent: string;
        maxTokens: string;
        feedbackDb?: string;
        feedback: boolean;
        review: boolean;
      }) => {
        const port = whole(opts.port, '--port', 0);
        const perMinute = whole(opts.rateLimit, '--rate-limit', 0);
        const limits = {
          rateLimit: perMinute > 0 ? { max: perMinute, windowMs: 60_000 } : null,
          maxConcurrent: whole(opts.maxConcurrent, '--max-concurrent'),
          maxNewTokens: whole(opts.maxTokens, '--max-tokens'),
        };
        const apiKeys = [...(opts.apiKey ?? []), ...(process.env.TUNELINE_API_KEYS ?? '').split(',').filter(Boolean)];
        let model: ChatModel;
        let stopWatching = () => {};
        const loaded = opts.export ? undefined : requireValidConfig(opts.config);
        if (opts.export) model = await loadExportModel(opts.export);
        else if (opts.run)
          model = await loadRunModel(
            openStore(loaded!.config.storage, loaded!.configDir),
            runManifest(loaded!.config, loaded!.configDir, opts.run),
          );
        else
          model = await loadRunModel(
            openStore(loaded!.config.storage, loaded!.configDir),
            productionManifest(loaded!.config, loaded!.configDir).manifest,
          );
        const feedbackFile =
          opts.feedbackDb ?? (loaded ? resolve(loaded.configDir, loaded.config.storage.feedback) : resolve('.tuneline', 'feedback.sqlite'));
        const feedback = opts.feedback ? new FeedbackStore(feedbackFile) : undefined;
        // The review page needs a pipeline (its runs) and the reviewers' tokens, kept beside the feedback.
        const temporal = loaded && opts.review ? lazySession() : undefined;
        const reviewers = temporal && new ReviewerStore(feedbackFile);
        const review = temporal && reviewers && { backend: temporalReviews(loaded!.config.name, temporal), reviewers };
        const server = await createChatServer(model, { limits, apiKeys, feedback, review, aliases: loaded ? [loaded.config.name] : [] });
        if (loaded && !opts.run)
          stopWatching = watchProduction(loaded.config, loaded.configDir, (runId) => {
            console.log(`The production model moved to ${runId}; loading it...`);
            loadRunModel(openStore(loaded.config.storage, loaded.configDir), productionManifest(loaded.config, loaded.configDir).manifest)
              .then((next) => server.swap(next).then(() => console.log(`Serving ${next.id}.`)))
              .catch((err: Error) => console.error(`Could not load ${runId} (still serving the previous model): ${err.message}`));
          });
        const address = await server.app.listen({ host: opts.host, port });
        console.log(
          `Serving ${model.id} on ${address}/v1 (OpenAI-compatible${apiKeys.length ? ', API key required' : ''}); Ctrl-C stops it.`,
        );
        if (feedback) console.log(`Answers and ratings (POST /v1/feedback) go to ${feedbackFile}.`);
        if (review) console.log(`Reviewers judge runs waiting for review at ${address}/review (tokens: tuneline review invite <name>).`);
        await new Promise((stop) => process.once('SIGINT', stop).once('SIGTERM', stop));
        console.log('Stopping: open answers finish first...');
        stopWatching();
        await server.shutdown();
        await temporal?.close();
        feedback?.close();
        reviewers?.close();
      },
    );
}
