import type { Command } from 'commander';
import { connectWorker, createWorker, installQuietRuntime } from '../../workers/create';
import type { QueueName } from '../../workflows/definitions';
import { UserError } from '../config';
import { targetFromEnv } from '../connection';
import { runningServer } from '../server';

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('Run a worker for one task queue until stopped (SIGINT or SIGTERM drain it gracefully).')
    .requiredOption('-q, --queue <queue>', 'cpu (workflows and data activities) or gpu (training)')
    .action(async (opts: { queue: string }) => {
      if (opts.queue !== 'cpu' && opts.queue !== 'gpu') throw new UserError(`--queue must be cpu or gpu, not "${opts.queue}"`);
      const server = runningServer();
      const target = targetFromEnv() ?? (server && { address: server.address, namespace: 'default' });
      if (!target) throw new UserError('no Temporal server: set TEMPORAL_ADDRESS, or start one with `tuneline server start`.');
      installQuietRuntime(process.env.TUNELINE_LOG_LEVEL === 'info' ? 'INFO' : 'WARN');
      const connection = await connectWorker(target);
      const worker = await createWorker(opts.queue as QueueName, connection, target.namespace);
      console.error(`worker polling ${opts.queue} queue on ${target.address} (pid ${process.pid})`);
      await worker.run();
      await connection.close();
    });
}
