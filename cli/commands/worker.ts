import { resolve } from 'node:path';
import type { Command } from 'commander';
import { connectWorker, createWorker, installWorkerLogging } from '../../workers/create';
import type { QueueName } from '../../workflows/definitions';
import { UserError } from '../config';
import { targetFromEnv } from '../connection';
import { runningServer } from '../server';

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description(
      'Run a worker for one task queue until stopped (SIGINT or SIGTERM drain it gracefully). Its logs go to stderr, ' +
        'or to --log-file; TUNELINE_LOG_LEVEL=info (or debug) says more.',
    )
    .requiredOption('-q, --queue <queue>', 'cpu (workflows and data activities) or gpu (training)')
    .option('--log-file <path>', 'append the worker and SDK logs to this file instead of stderr')
    .option('--slots <n>', 'activities run at once (gpu default: 1, one training per GPU; cpu default: the SDK default)')
    .option('--cache-dir <dir>', "where a bucket's artifacts are cached on this machine (default: TUNELINE_CACHE_DIR or ~/.cache/tuneline)")
    .option('--cache-gb <n>', 'size limit of that cache; least recently used entries go first (default: TUNELINE_CACHE_GB or 20)')
    .action(async (opts: { queue: string; logFile?: string; slots?: string; cacheDir?: string; cacheGb?: string }) => {
      if (opts.queue !== 'cpu' && opts.queue !== 'gpu') throw new UserError(`--queue must be cpu or gpu, not "${opts.queue}"`);
      const slots = opts.slots === undefined ? undefined : Number(opts.slots);
      if (slots !== undefined && !(Number.isInteger(slots) && slots >= 1)) {
        throw new UserError(`--slots must be a whole number of at least 1, not "${opts.slots}"`);
      }
      if (opts.cacheGb !== undefined && !(Number(opts.cacheGb) > 0)) {
        throw new UserError(`--cache-gb must be a positive number of gigabytes, not "${opts.cacheGb}"`);
      }
      // The activities read the cache settings from the environment (activities/context.ts cacheSettings).
      if (opts.cacheDir) process.env.TUNELINE_CACHE_DIR = resolve(opts.cacheDir);
      if (opts.cacheGb) process.env.TUNELINE_CACHE_GB = opts.cacheGb;
      const server = runningServer();
      const target = targetFromEnv() ?? (server && { address: server.address, namespace: 'default' });
      if (!target) throw new UserError('no Temporal server: set TEMPORAL_ADDRESS, or start one with `tuneline temporal start`.');
      const logFile = opts.logFile && resolve(opts.logFile);
      installWorkerLogging(logFile);
      const connection = await connectWorker(target);
      const worker = await createWorker(opts.queue as QueueName, connection, target.namespace, undefined, slots);
      const slotsNote = slots ? `, ${slots} slot(s)` : '';
      console.error(
        `worker polling ${opts.queue} queue on ${target.address} (pid ${process.pid}${slotsNote})${logFile ? `; logs in ${logFile}` : ''}`,
      );
      try {
        await worker.run();
      } finally {
        await connection.close(); // with --log-file the SDK runtime, and this process, lives until then
      }
    });
}
