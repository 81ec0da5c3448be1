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
    .action(async (opts: { queue: string; logFile?: string }) => {
      if (opts.queue !== 'cpu' && opts.queue !== 'gpu') throw new UserError(`--queue must be cpu or gpu, not "${opts.queue}"`);
      const server = runningServer();
      const target = targetFromEnv() ?? (server && { address: server.address, namespace: 'default' });
      if (!target) throw new UserError('no Temporal server: set TEMPORAL_ADDRESS, or start one with `tuneline temporal start`.');
      const logFile = opts.logFile && resolve(opts.logFile);
      installWorkerLogging(logFile);
      const connection = await connectWorker(target);
      const worker = await createWorker(opts.queue as QueueName, connection, target.namespace);
      console.error(`worker polling ${opts.queue} queue on ${target.address} (pid ${process.pid})${logFile ? `; logs in ${logFile}` : ''}`);
      try {
        await worker.run();
      } finally {
        await connection.close(); // with --log-file the SDK runtime, and this process, lives until then
      }
    });
}
