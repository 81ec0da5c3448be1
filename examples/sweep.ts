/**
 * Starts a sweep of a pipeline file's `sweep:` grid from a script, follows its trials, and prints
 * the winner: the client module's sweep functions in use. Workers must be running
 * (`npx tuneline worker --queue cpu` and `--queue gpu`, against the same Temporal server).
 *
 *   npx tsx examples/sweep.ts [temporal.yaml]
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { startSweep, sweepStatus } from '../cli/client';
import { requireValidConfig } from '../cli/config';
import { openSession } from '../cli/session';

const session = await openSession({ log: (line) => console.log(line) });
try {
  const handle = await startSweep(session.client, requireValidConfig(process.argv[2] ?? 'temporal.yaml'));
  console.log(`sweep ${handle.workflowId}`);
  for (;;) {
    const { status, progress } = await sweepStatus(session.client, handle.workflowId);
    const counts = new Map<string, number>();
    for (const t of progress?.trials ?? []) counts.set(t.status, (counts.get(t.status) ?? 0) + 1);
    console.log(`${status}: ${[...counts].map(([state, n]) => `${n} ${state}`).join(', ') || 'preparing the data'}`);
    if (status !== 'RUNNING') break;
    await sleep(10_000);
  }
  const result = await handle.result();
  const best = result.trials.find((t) => t.best);
  console.log(best ? `best: trial ${best.trial} (${best.label}), ${result.metric} ${best.metric}` : 'no trial finished');
  console.log(`gate: ${result.outcome}; ${result.trialSteps} trial steps trained of ${result.gridSteps} for the whole grid`);
  if (result.sweepFolder) console.log(`sweep.json and the report: ${result.sweepFolder}`);
} finally {
  await session.close();
}
