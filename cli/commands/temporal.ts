import type { Command } from 'commander';
import { UserError } from '../config';
import { adoptServer, inspectServer, removeServerRecord, startDevServer, stateDir, stopServer, type ServerRecord } from '../server';

/** One line about the state folder's server: where it is, which kind, who stops it. */
function describe(kind: 'long-lived' | 'in-use' | 'orphaned', record: ServerRecord): string {
  const { address, uiUrl, pid, dbFile, ownerPid } = record;
  const which = {
    'long-lived': 'long-lived, from `tuneline temporal start`',
    'in-use': `embedded, owned by the tuneline process with pid ${ownerPid}, which stops it when it ends`,
    orphaned: `embedded, left by a tuneline process (pid ${ownerPid}) that ended without stopping it; the next run uses it`,
  }[kind];
  return `Temporal ${address}, Web UI ${uiUrl} (pid ${pid}, ${which}; database ${dbFile}).`;
}

export function registerTemporal(program: Command): void {
  const temporal = program
    .command('temporal')
    .description(
      'Manage the Temporal dev server on the state folder (SQLite in .tuneline/, or $TUNELINE_HOME): a long-lived one ' +
        'that runs and workers share, or the embedded one a run starts.',
    );
  temporal
    .command('start')
    .description('Start the dev server in the background; runs and workers use it until `tuneline temporal stop`.')
    .option('-p, --port <port>', 'frontend port (default 7233, or a free one)')
    .action(async (opts: { port?: string }) => {
      const dir = stateDir();
      const state = inspectServer(dir);
      if (state.kind === 'long-lived') {
        console.log(`Already running: ${describe('long-lived', state.record)}`);
        return;
      }
      if (state.kind === 'in-use')
        throw new UserError(
          `another run (pid ${state.record.ownerPid}) is using the embedded Temporal dev server on ${state.record.dbFile}; ` +
            'start the shared server once it has ended.',
        );
      if (state.kind === 'orphaned') {
        const adopted = await adoptServer(dir, state.record, { longLived: true });
        if (adopted) {
          console.log(`Kept the dev server left by an earlier run as the shared one: ${describe('long-lived', adopted)}`);
          return;
        }
      }
      if (state.kind === 'stale') removeServerRecord(dir, state.record.pid);
      const started = await startDevServer({ dir, detached: true, port: opts.port ? Number(opts.port) : undefined });
      console.log(`Temporal ${started.address}, Web UI ${started.uiUrl} (pid ${started.pid}, database ${started.dbFile}).`);
    });
  temporal
    .command('stop')
    .description('Stop the server from `tuneline temporal start`, or one a run left behind.')
    .action(async () => {
      const dir = stateDir();
      const state = inspectServer(dir);
      if (state.kind === 'in-use')
        throw new UserError(
          `the dev server (pid ${state.record.pid}) belongs to the tuneline process with pid ${state.record.ownerPid}; it stops when that process ends.`,
        );
      if (state.kind === 'long-lived' || state.kind === 'orphaned') {
        await stopServer(dir, state.record);
        console.log(`Stopped (pid ${state.record.pid}).`);
        return;
      }
      if (state.kind === 'stale') removeServerRecord(dir, state.record.pid);
      console.log(`No server running for ${dir}.`);
    });
  temporal
    .command('status')
    .description('Say whether a dev server runs on the state folder, which kind, and where; exit 1 when none does.')
    .action(() => {
      const state = inspectServer();
      if (state.kind === 'none' || state.kind === 'stale') {
        console.log(`Not running (state folder ${stateDir()}).`);
        process.exitCode = 1;
      } else console.log(`Running: ${describe(state.kind, state.record)}`);
    });
}
