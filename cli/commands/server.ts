import type { Command } from 'commander';
import { runningServer, startDevServer, stateDir, stopDevServer } from '../server';

export function registerServer(program: Command): void {
  const server = program.command('server').description('Manage a long-lived embedded Temporal dev server (SQLite in .tuneline/).');
  server
    .command('start')
    .description('Start the dev server in the background; runs and workers use it until `server stop`.')
    .option('-p, --port <port>', 'frontend port (default 7233, or a free one)')
    .action(async (opts: { port?: string }) => {
      const running = runningServer();
      if (running) {
        console.log(`Already running: Temporal ${running.address}, Web UI ${running.uiUrl} (pid ${running.pid}).`);
        return;
      }
      const started = await startDevServer({ detached: true, port: opts.port ? Number(opts.port) : undefined });
      console.log(`Temporal ${started.address}, Web UI ${started.uiUrl} (pid ${started.pid}, database ${started.dbFile}).`);
    });
  server
    .command('stop')
    .description('Stop the server started by `server start`.')
    .action(async () => {
      console.log((await stopDevServer()) ? 'Stopped.' : `No server running for ${stateDir()}.`);
    });
  server
    .command('status')
    .description('Say whether the server is running, and where.')
    .action(() => {
      const running = runningServer();
      if (running) console.log(`Running: Temporal ${running.address}, Web UI ${running.uiUrl} (pid ${running.pid}).`);
      else {
        console.log(`Not running (state folder ${stateDir()}).`);
        process.exitCode = 1;
      }
    });
}
