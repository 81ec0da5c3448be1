import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { RunManifest, type PipelineResult } from '../../schemas/manifests';
import { SearchAttributes } from '../../workflows/definitions';
import { queryProgress, recordFolder } from '../client';
import { printSummary } from './run';
import { openSession } from '../session';

/** The run's `run.json`; undefined when the run has written none yet. */
async function readManifest(handle: WorkflowHandle): Promise<{ path: string; manifest: RunManifest } | undefined> {
  const folder = await recordFolder(handle);
  const path = folder && join(folder, 'run.json');
  return path && existsSync(path) ? { path, manifest: RunManifest.parse(JSON.parse(readFileSync(path, 'utf8'))) } : undefined;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('Show a run: status, stage, steps, and its summary (metric table, gate verdict, report) or error.')
    .argument('<run-id>', 'the workflow id printed by `tuneline run`')
    .option('--json', 'print one JSON object: status, progress, result and the run manifest (run.json)')
    .action(async (runId: string, opts: { json?: boolean }) => {
      const session = await openSession({ clientOnly: true });
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
        const recorded = await readManifest(handle);
        if (opts.json) {
          const manifest = recorded?.manifest;
          console.log(JSON.stringify({ workflowId: runId, runId: description.runId, status, stage, progress, result, error, manifest }));
          return;
        }
        console.log(`${runId}: ${status}, stage ${stage ?? 'unknown'}, started ${description.startTime.toISOString()}`);
        for (const s of progress?.steps ?? []) console.log(`  ${s.status.padEnd(7)} ${s.step} ${s.summary ?? ''}`);
        if (status === 'RUNNING' && !progress) console.log('  (no worker answered the progress query: is a worker running?)');
        if (error) console.log(`Error: ${error}`);
        if (result) printSummary(result);
        else if (recorded) console.log(`Run manifest: ${recorded.path}`);
      } finally {
        await session.close();
      }
    });
}
