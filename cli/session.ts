/**
 * Connects a command to Temporal: the cluster named by the environment, else the long-lived
 * `tuneline temporal` server, else an embedded dev server that this process starts (or adopts from
 * a run that died without stopping it) and stops.
 */
import { Client, Connection } from '@temporalio/client';
import { dataConverterFromEnv } from '../lib/encryption';
import { UserError } from './config';
import { targetFromEnv, type TemporalTarget } from './connection';
import { adoptServer, inspectServer, removeServerRecord, startDevServer, stateDir, type ServerRecord } from './server';

export interface TemporalSession {
  target: TemporalTarget;
  client: Client;
  uiUrl?: string;
  /** Closes the connection and stops the server if this session started or adopted it. */
  close: () => Promise<void>;
}

export interface SessionOptions {
  log?: (line: string) => void;
  /**
   * A client only (it starts no workers): it may use the embedded server a live run owns, e.g. to
   * vote in that run's review, and that run still stops the server when it ends.
   */
  clientOnly?: boolean;
  /** Whether to start an embedded server when none runs (a command that only reads live runs has nothing to read on a new one). */
  start?: boolean;
}

/** The dev server for the state folder: the shared one, one left by a dead run, or a new one. */
async function embeddedServer(options: SessionOptions): Promise<{ record: ServerRecord; stop?: () => Promise<void> }> {
  const log = options.log ?? (() => {});
  const dir = stateDir();
  const state = inspectServer(dir);
  switch (state.kind) {
    case 'long-lived':
      return { record: state.record };
    case 'in-use':
      if (options.clientOnly) return { record: state.record };
      throw new UserError(
        `another run (pid ${state.record.ownerPid}) is using the embedded Temporal dev server on ${state.record.dbFile}; ` +
          'wait for it to end. To run several at once, start a shared server with `tuneline temporal start` while none runs: ' +
          'every run then uses it.',
      );
    case 'orphaned': {
      const { pid, dbFile } = state.record;
      const adopted = await adoptServer(dir, state.record, { longLived: false });
      if (adopted) {
        log(
          `Found a Temporal dev server left by an earlier run (pid ${pid}) on ${dbFile}; using it; this process now stops it at the end.`,
        );
        return { record: adopted, stop: adopted.stop };
      }
      log(`A Temporal dev server left by an earlier run (pid ${pid}) on ${dbFile} did not answer; stopped it.`);
      break;
    }
    case 'stale':
      removeServerRecord(dir, state.record.pid);
      break;
    case 'none':
      break;
  }
  if (options.start === false)
    throw new UserError(
      'no Temporal server is running: start a run (tuneline run) or a shared server (tuneline temporal start), or set TEMPORAL_ADDRESS',
    );
  log('Starting the embedded Temporal dev server...');
  const started = await startDevServer({ dir });
  return { record: started, stop: started.stop };
}

/** Runs `body` with a client of a session opened for it, and closes the session however `body` ends. */
export async function withSession<T>(body: (client: Client) => Promise<T>, options: SessionOptions = {}): Promise<T> {
  const session = await openSession(options);
  try {
    return await body(session.client);
  } finally {
    await session.close();
  }
}

export async function openSession(options: SessionOptions = {}): Promise<TemporalSession> {
  const log = options.log ?? (() => {});
  let target = targetFromEnv();
  let uiUrl: string | undefined;
  let stopServer: (() => Promise<void>) | undefined;
  if (!target) {
    const server = await embeddedServer(options);
    target = { address: server.record.address, namespace: 'default' };
    uiUrl = server.record.uiUrl;
    stopServer = server.stop;
    log(`Temporal ${target.address}, Web UI ${uiUrl}`);
  }
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: target.address, tls: target.tls, apiKey: target.apiKey });
  } catch (err) {
    await stopServer?.();
    throw err;
  }
  const client = new Client({ connection, namespace: target.namespace, dataConverter: dataConverterFromEnv() });
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
