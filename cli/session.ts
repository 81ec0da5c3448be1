/**
 * Connects a command to Temporal: the cluster named by the environment, else the long-lived
 * `tuneline server`, else an embedded dev server that this process starts and stops.
 */
import { Client, Connection } from '@temporalio/client';
import { targetFromEnv, type TemporalTarget } from './connection';
import { runningServer, startDevServer } from './server';

export interface TemporalSession {
  target: TemporalTarget;
  client: Client;
  uiUrl?: string;
  /** Closes the connection and stops the server if this session started it. */
  close: () => Promise<void>;
}

export async function openSession(options: { log?: (line: string) => void } = {}): Promise<TemporalSession> {
  const log = options.log ?? (() => {});
  let target = targetFromEnv();
  let uiUrl: string | undefined;
  let stopServer: (() => Promise<void>) | undefined;
  if (!target) {
    const running = runningServer();
    if (running) {
      target = { address: running.address, namespace: 'default' };
      uiUrl = running.uiUrl;
    } else {
      log('Starting the embedded Temporal dev server...');
      const server = await startDevServer();
      target = { address: server.address, namespace: 'default' };
      uiUrl = server.uiUrl;
      stopServer = server.stop;
    }
    log(`Temporal ${target.address}, Web UI ${uiUrl}`);
  }
  const connection = await Connection.connect({ address: target.address, tls: target.tls, apiKey: target.apiKey });
  const client = new Client({ connection, namespace: target.namespace });
  return {
    target,
    client,
    uiUrl,
    close: async () => {
      await connection.close();
      await stopServer?.();
    },
  };
}
