/**
 * `tuneline runs list`: the runs and sweeps the server knows, newest first, filtered by pipeline,
 * status and start time through their search attributes (a visibility query, not a history scan).
 */
import type { Command } from 'commander';
import { SearchAttributes } from '../../workflows/definitions';
import { UserError } from '../config';
import { openSession } from '../session';
import { printTable } from '../table';

const STATUSES = ['running', 'completed', 'failed', 'canceled', 'terminated', 'timed-out', 'continued-as-new'] as const;
/** The visibility store's spelling of each status. */
const STATUS_QUERY: Record<(typeof STATUSES)[number], string> = {
  running: 'Running',
  completed: 'Completed',
  failed: 'Failed',
  canceled: 'Canceled',
  terminated: 'Terminated',
  'timed-out': 'TimedOut',
  'continued-as-new': 'ContinuedAsNew',
};

export interface RunListing {
  id: string;
  kind: 'run' | 'sweep';
  pipeline: string | null;
  status: string;
  stage: string | null;
  configHash: string | null;
  startedAt: string;
  closedAt: string | null;
}

/** The visibility query for `runs list`'s filters; every problem with them at once. */
export function runsQuery(opts: { pipeline?: string; status?: string; since?: string }): string {
  const problems: string[] = [];
  const clauses = ['WorkflowType IN ("finetunePipeline", "sweep")'];
  if (opts.pipeline !== undefined) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(opts.pipeline))
      problems.push(`--pipeline ${opts.pipeline}: a pipeline name is lower-case letters, digits and dashes`);
    else clauses.push(`${SearchAttributes.pipeline.name} = "${opts.pipeline}"`);
  }
  if (opts.status !== undefined) {
    const status = STATUS_QUERY[opts.status as (typeof STATUSES)[number]];
    if (!status) problems.push(`--status ${opts.status}: one of ${STATUSES.join(', ')}`);
    else clauses.push(`ExecutionStatus = "${status}"`);
  }
  if (opts.since !== undefined) {
    if (Number.isNaN(Date.parse(opts.since))) problems.push(`--since ${opts.since}: a date such as 2026-12-01 or 2026-12-01T08:00:00Z`);
    else clauses.push(`StartTime >= "${new Date(opts.since).toISOString()}"`);
  }
  if (problems.length > 0) throw new UserError(problems.join('\n'));
  return clauses.join(' AND ');
}

export function registerRuns(program: Command): void {
  const runs = program.command('runs').description('The runs and sweeps the Temporal server knows.');
  runs
    .command('list')
    .description('Runs and sweeps, newest first, filtered by pipeline, status and start time.')
    .option('--pipeline <name>', "only this pipeline's")
    .option('--status <status>', `only those in this state: ${STATUSES.join(', ')}`)
    .option('--since <date>', 'only those started since this date')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print a JSON array')
    .action(async (opts: { pipeline?: string; status?: string; since?: string; limit: string; json?: boolean }) => {
      const query = runsQuery(opts);
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UserError(`--limit ${opts.limit}: a whole number of at least 1`);
      const session = await openSession();
      const listed: RunListing[] = [];
      try {
        for await (const w of session.client.workflow.list({ query })) {
          const attrs = w.typedSearchAttributes;
          listed.push({
            id: w.workflowId,
            kind: w.type === 'sweep' ? 'sweep' : 'run',
            pipeline: attrs.get(SearchAttributes.pipeline) ?? null,
            status: w.status.name.toLowerCase().replace(/_/g, '-'),
            stage: attrs.get(SearchAttributes.stage) ?? null,
            configHash: attrs.get(SearchAttributes.configHash) ?? null,
            startedAt: w.startTime.toISOString(),
            closedAt: w.closeTime?.toISOString() ?? null,
          });
          if (listed.length >= limit) break;
        }
      } finally {
        await session.close();
      }
      if (opts.json) return console.log(JSON.stringify(listed));
      if (listed.length === 0) return console.log('No runs match.');
      const rows = [
        ['id', 'kind', 'pipeline', 'status', 'stage', 'started'],
        ...listed.map((r) => [r.id, r.kind, r.pipeline ?? '', r.status, r.stage ?? '', r.startedAt]),
      ];
      printTable(rows);
    });
}
