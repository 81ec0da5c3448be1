import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPipeline } from '../../cli/client';
import { loadConfigFile } from '../../cli/config';
import { startDevServer } from '../../cli/server';
import { childWorkflowId } from '../../workflows/definitions';
import type { PipelineResult } from '../../schemas/manifests';
import { activityAttempts, killAndWait, spawnWorker, startTestServer, tempDir, waitFor, writePipeline, type TestServer } from './harness';

/** These tests are about the data stage; training has its own. */
const DATA_ONLY = { stopAfter: 'data' } as const;

// Large enough that the data steps take seconds, so "mid-run" is a real window, not a race.
const ROWS = 60_000;
const DATA_STEPS = ['ingestData', 'cleanData', 'dedupData', 'splitData'];
/** temporal.api.enums.v1.PendingActivityState.STARTED: a worker holds the task. */
const PENDING_ACTIVITY_STARTED = 2;

let env: TestServer;
let workers: Array<ReturnType<typeof spawnWorker>> = [];
let reference: PipelineResult;

const pipeline = () =>
  loadConfigFile(
    writePipeline(tempDir(), {
      name: 'it-durable',
      data: { sample: { rows: ROWS, seed: 11 }, columns: { category: 'category', product: 'product' } },
    }),
  );

/** Each run has its own store, so compare what the splits hold, not where they are. */
const contentOf = (r: PipelineResult) => Object.fromEntries(Object.entries(r.data.splits).map(([k, ref]) => [k, [ref.sha256, ref.rows]]));

/** The run's data stage, where the data activities run. */
const dataStageOf = (handle: WorkflowHandle) => env.client.workflow.getHandle(childWorkflowId.data(handle.workflowId));

/** Waits until one of the data activities has been picked up by a worker, and says which. */
async function activityInFlight(handle: WorkflowHandle): Promise<string> {
  const description = await waitFor(
    () => dataStageOf(handle).describe(),
    (d) =>
      (d.raw.pendingActivities ?? []).some(
        (a) => DATA_STEPS.includes(a.activityType?.name ?? '') && Number(a.state) === PENDING_ACTIVITY_STARTED,
      ),
    120_000,
  );
  return (description.raw.pendingActivities ?? []).map((a) => a.activityType?.name).join(',');
}

beforeAll(async () => {
  env = await startTestServer();
  workers.push(spawnWorker('cpu', env.server.address));
  reference = await (await startPipeline(env.client, pipeline(), DATA_ONLY)).result();
});

afterAll(async () => {
  for (const w of workers) await killAndWait(w);
  await env?.close();
});

describe('durability', () => {
  it('finishes with the same result when the worker is killed mid-run and a new one starts', async () => {
    const handle = await startPipeline(env.client, pipeline(), { ...DATA_ONLY, dataHeartbeatTimeout: '5s' });
    const running = await activityInFlight(handle);
    await killAndWait(workers[0]!, 'SIGKILL');
    workers = [spawnWorker('cpu', env.server.address)];
    const result = await handle.result();
    expect(running).not.toBe('');
    // The step that was running when the worker died ran again on the new worker.
    const attempts = await activityAttempts(dataStageOf(handle));
    expect(Math.max(...DATA_STEPS.map((s) => attempts[s] ?? 0))).toBeGreaterThanOrEqual(2);
    expect(contentOf(result)).toEqual(contentOf(reference));
  });

  it('finishes when the server restarts mid-activity on the same SQLite file: the activity it lost is retried', async () => {
    const handle = await startPipeline(env.client, pipeline(), { ...DATA_ONLY, dataHeartbeatTimeout: '3s' });
    const running = await activityInFlight(handle);
    // The worker is frozen through the outage, as one cut off from the server would be: the attempt it
    // holds can only be saved by the restarted server timing it out and retrying it.
    const worker = workers[0]!;
    worker.kill('SIGSTOP');
    try {
      const port = Number(env.server.address.split(':')[1]);
      await env.server.stop();
      env.server = await startDevServer({ dir: env.dir, port });
      // The restarted server still holds the run, and times the frozen attempt out from its own records.
      await waitFor(
        () => dataStageOf(handle).describe(),
        (d) => (d.raw.pendingActivities ?? []).some((a) => running.includes(a.activityType?.name ?? '-') && (a.attempt ?? 1) >= 2),
        60_000,
      );
    } finally {
      worker.kill('SIGCONT');
    }
    const result = await handle.result();
    expect(contentOf(result)).toEqual(contentOf(reference));
    const attempts = await activityAttempts(dataStageOf(handle));
    expect(Math.max(...running.split(',').map((name) => attempts[name] ?? 0))).toBeGreaterThanOrEqual(2);
  });
});
