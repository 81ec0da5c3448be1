/** Where the worker logs of a `tuneline` process go, under the state folder. */
import { join } from 'node:path';
import { stateDir } from './server';

/** `<state folder>/logs/worker-<UTC time>-<pid>.log`: sortable by time, and one file per process. */
export function workerLogPath(dir = stateDir(), now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..+/, '').replace('T', '-');
  return join(dir, 'logs', `worker-${stamp}-${process.pid}.log`);
}
