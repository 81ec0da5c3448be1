/**
 * `tuneline sweep start | status | results | cancel`: the pipeline file's `sweep:` grid as durable
 * trials. `start` runs the workers in this process and follows the sweep to its end (or, with
 * --detach, leaves it to `tuneline worker` processes); the others read or cancel a sweep by id.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { WorkflowFailedError } from '@temporalio/client';
import type { NativeConnection, Worker } from '@temporalio/worker';
import type { SweepProgress, SweepTrial } from '../../schemas/manifests';
import { closeWorkerConnection, connectWorker, createWorker, installWorkerLogging } from '../../workers/create';
import { cancelSweep, startSweep, sweepStatus } from '../client';
import { UserError, requireValidConfig } from '../config';
import { workerLogPath } from '../logs';
import { openSession } from '../session';
import { csvField, printTable } from '../table';

const fixed = (value: number | null | undefined, digits: number) => (typeof value === 'number' ? value.toFixed(digits) : '');

/** The columns of `sweep results`, one row per trial. */
export function trialRows(progress: Pick<SweepProgress, 'rungs' | 'trials'>): string[][] {
  const header = [
    'trial',
    'strategy',
    'rank',
    'alpha',
    'learningRate',
    'status',
    'steps',
    ...progress.rungs.map((step) => `loss@${step}`),
    'validationLoss',
    'metric',
    'trainSeconds',
    'tokensPerSecond',
    'trainableParameters',
    'peakMemoryMB',
    'best',
  ];
  const rows = progress.trials.map((t: SweepTrial) => [
    String(t.trial),
    t.point.strategy ?? 'lora',
    t.point.strategy === 'full' ? '' : String(t.point.lora?.rank ?? ''),
    t.point.strategy === 'full' ? '' : String(t.point.lora?.alpha ?? ''),
    String(t.point.learningRate ?? ''),
    t.status === 'stopped' ? `stopped at ${t.stoppedAtStep}` : t.status === 'failed' ? `failed: ${t.error ?? ''}` : t.status,
    String(t.steps),
    ...progress.rungs.map((step) => fixed(t.rungs.find((r) => r.step === step)?.validationLoss, 4)),
    fixed(t.validationLoss, 4),
    fixed(t.metric, 4),
    fixed(t.trainSeconds, 1),
    fixed(t.tokensPerSecond, 0),
    t.trainableParameters === null ? '' : String(t.trainableParameters),
    t.peakMemoryBytes === null ? '' : (t.peakMemoryBytes / 2 ** 20).toFixed(0),
    t.best ? 'best' : '',
  ]);
  return [header, ...rows];
}

/** One line per trial that changed since the last call. */
function trialChanges() {
  const seen = new Map<number, string>();
  return (progress: SweepProgress | undefined, say: (line: string) => void) => {
    for (const t of progress?.trials ?? []) {
      const rung = t.rungs.at(-1);
      const line =
        `  trial ${t.trial} ${t.label}: ${t.status === 'stopped' ? `stopped at step ${t.stoppedAtStep}` : t.status}` +
        (rung ? `, validation loss ${rung.validationLoss.toFixed(4)} at step ${rung.step}` : '') +
        (t.validationLoss !== null ? `, final ${t.validationLoss.toFixed(4)}` : '') +
        (t.error ? `: ${t.error}` : '');
      if (seen.get(t.trial) !== line) {
        seen.set(t.trial, line);
        say(line);
      }
    }
  };
}

export function registerSweep(program: Command): void {
  const sweep = program.command('sweep').description('Search the `sweep:` grid of the pipeline file: one durable trial per point.');

  sweep
    .command('start')
    .description('Start a sweep; by default run the workers here and follow it to its end.')
    .option('-c, --config <path>', 'pipeline file', 'temporal.yaml')
    .option('--no-cache', 're-run every step even when its cached output is intact')
    .option('--detach', 'only start it (workers run elsewhere: `tuneline worker`); print its id')
    .option('--json', 'print one JSON object: the sweep id, and its result unless detached')
    .action(async (opts: { config: string; cache: boolean; detach?: boolean; json?: boolean }) => {
      const loaded = requireValidConfig(opts.config);
      const say = opts.json ? (line: string) => console.error(line) : (line: string) => console.log(line);
      const session = await openSession({ log: say });
      const workers: Worker[] = [];
      let connection: NativeConnection | undefined;
      try {
        if (!opts.detach) {
          // Logging is installed before the first worker connection creates Temporal's runtime.
          const logFile = workerLogPath();
          installWorkerLogging(logFile);
          say(`Worker logs: ${logFile}`);
          connection = await connectWorker(session.target);
          workers.push(await createWorker('cpu', connection, session.target.namespace));
          workers.push(await createWorker('gpu', connection, session.target.namespace));
        }
        const running = workers.map((w) => w.run());
        const handle = await startSweep(session.client, loaded, { noCache: !opts.cache, command: 'tuneline sweep start' });
        say(`Sweep ${handle.workflowId}`);
        if (opts.detach) {
          if (opts.json) console.log(JSON.stringify({ sweepId: handle.workflowId }));
          else say(`Follow it with \`tuneline sweep status ${handle.workflowId}\`; workers: \`tuneline worker\`.`);
          return;
        }
        const show = trialChanges();
        const poll = setInterval(() => {
          void sweepStatus(session.client, handle.workflowId)
            .then((s) => show(s.progress, say))
            .catch(() => {});
        }, 2000);
        try {
          // Workers stop before the sweep ends only when a signal (Ctrl-C) shut them down: nothing would finish it then.
          const interrupted = Promise.all(running).then(() => undefined);
          const result = await Promise.race([handle.result(), interrupted]);
          if (result === undefined) {
            await handle.terminate('interrupted: the workers of `tuneline sweep start` were stopped by a signal').catch(() => {});
            say(`\nInterrupted: sweep ${handle.workflowId} and its trials stopped (terminated, the reason is in its history).`);
            say('Start it again to go on: every trial leg that finished is reused from the cache.');
            process.exitCode = 130;
            return;
          }
          show({ ...result, stage: 'done' }, say);
          if (opts.json) console.log(JSON.stringify({ sweepId: handle.workflowId, result }));
          else {
            printTable(trialRows(result));
            const winner = result.trials.find((t) => t.best);
            say(
              winner
                ? `\nBest: trial ${winner.trial} (${winner.label}), ${result.metric} ${fixed(winner.metric, 4)}; gate: ${result.outcome}.`
                : '\nNo trial finished: no winner.',
            );
            say(`Trained ${result.trialSteps} trial steps; the whole grid without halving: ${result.gridSteps}.`);
            if (result.sweepFolder) {
              if (result.report) say(`Sweep report: ${join(result.sweepFolder, 'report', 'report.html')} (and report.md)`);
              say(`Sweep manifest: ${join(result.sweepFolder, 'sweep.json')}`);
            }
          }
        } catch (err) {
          process.exitCode = 1;
          console.error(`Sweep failed: ${err instanceof WorkflowFailedError ? (err.cause?.message ?? err.message) : String(err)}`);
        } finally {
          clearInterval(poll);
          for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
          await Promise.all(running);
        }
      } finally {
        for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
        await closeWorkerConnection(workers, connection);
        await session.close();
      }
    });

  sweep
    .command('status')
    .description("A sweep's state and every trial's, as they stand.")
    .argument('<sweep-id>')
    .option('--json', 'print one JSON object')
    .action(async (sweepId: string, opts: { json?: boolean }) => {
      const session = await openSession({ clientOnly: true });
      try {
        const status = await sweepStatus(session.client, sweepId);
        if (opts.json) return console.log(JSON.stringify({ sweepId, ...status }));
        console.log(`${sweepId}: ${status.status}${status.progress ? `, ${status.progress.stage}` : ''}`);
        if (status.error) console.log(`Error: ${status.error}`);
        if (!status.progress) console.log('  (no worker answered the query: is a worker running?)');
        else trialChanges()(status.progress, (line) => console.log(line));
      } finally {
        await session.close();
      }
    });

  sweep
    .command('results')
    .description('Every trial: parameters, state, steps, validation loss at each rung, metric, time, best marked.')
    .argument('<sweep-id>')
    .option('--json', 'print the trials as JSON')
    .option('--csv', 'print the trials as CSV')
    .action(async (sweepId: string, opts: { json?: boolean; csv?: boolean }) => {
      if (opts.json && opts.csv) throw new UserError('choose one of --json and --csv');
      const session = await openSession({ clientOnly: true });
      try {
        const { progress } = await sweepStatus(session.client, sweepId);
        if (!progress) throw new UserError(`no worker answered for sweep ${sweepId}: start one with \`tuneline worker\``);
        if (opts.json) console.log(JSON.stringify(progress.trials));
        else if (opts.csv) for (const row of trialRows(progress)) console.log(row.map(csvField).join(','));
        else printTable(trialRows(progress));
      } finally {
        await session.close();
      }
    });

  sweep
    .command('cancel')
    .description('Cancel a sweep and every trial it is running (training stops at a checkpoint).')
    .argument('<sweep-id>')
    .action(async (sweepId: string) => {
      const session = await openSession({ clientOnly: true });
      try {
        await cancelSweep(session.client, sweepId);
        console.log(`Cancel requested for ${sweepId}; its running trials are cancelled with it.`);
      } finally {
        await session.close();
      }
    });
}
