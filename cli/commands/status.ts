import type { Command } from 'commander';
import { WorkflowFailedError } from '@temporalio/client';
import { SearchAttributes } from '../../workflows/definitions';
import type { PipelineResult } from '../../schemas/manifests';
import { queryProgress } from '../client';
import { printSummary } from './run';
import { openSession } from '../session';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('Show a run: status, stage, steps, and its summary (metric table, gate verdict, report) or error.')
    .argument('<run-id>', 'the workflow id printed by `tuneline run`')
    .option('--json', 'print one JSON object')
    .action(async (runId: string, opts: { json?: boolean }) => {
      const session = await openSession();
      try {
        const handle = session.client.workflow.getHandle(runId);
        const description = await handle.describe();
        const stage = description.typedSearchAttributes.get(SearchAttributes.stage);
        const status = description.status.name;
        let result: PipelineResult | undefined;
        let error: string | undefined;
        if (status === 'COMPLETED') result = await handle.result();
        if (status === 'FAILED') {
          try {
            await handle.result();
          } catch (err) {
            error = err instanceof WorkflowFailedError ? (err.cause?.message ?? err.message) : String(err);
          }
        }
        // Only a worker answers the query: when none is running, show what the server knows instead of waiting.
        const progress =
          status === 'RUNNING' ? await session.client.withDeadline(Date.now() + 5_000, () => queryProgress(handle)) : undefined;
        if (opts.json) {
          console.log(JSON.stringify({ workflowId: runId, runId: description.runId, status, stage, progress, result, error }));
          return;
        }
        console.log(`${runId}: ${status}, stage ${stage ?? 'unknown'}, started ${description.startTime.toISOString()}`);
        for (const s of progress?.steps ?? []) console.log(`  ${s.status.padEnd(7)} ${s.step} ${s.summary ?? ''}`);
        if (status === 'RUNNING' && !progress) console.log('  (no worker answered the progress query: is a worker running?)');
        if (error) console.log(`Error: ${error}`);
        if (result) printSummary(result);
      } finally {
        await session.close();
      }
    });
}
