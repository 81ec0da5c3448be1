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
  datasetHash: string | null;
  baseModel: string | null;
  codeVersion: string | null;
  verdict: string | null;
  startedBy: string | null;
  startedAt: string;
  closedAt: string | null;
}

/** The visibility query for `runs list`'s filters; every problem with them at once. */
/** The filters on lineage attributes: flag, search attribute, and the value as typed. */
const ATTRIBUTE_FILTERS = [
  ['dataset', SearchAttributes.datasetHash],
  ['config', SearchAttributes.configHash],
  ['baseModel', SearchAttributes.baseModel],
  ['codeVersion', SearchAttributes.codeVersion],
  ['verdict', SearchAttributes.verdict],
  ['startedBy', SearchAttributes.startedBy],
] as const;

export type RunsFilter = { pipeline?: string; status?: string; since?: string } & Partial<
  Record<(typeof ATTRIBUTE_FILTERS)[number][0], string>
>;

export function runsQuery(opts: RunsFilter): string {
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
  for (const [flag, key] of ATTRIBUTE_FILTERS) {
    const value = opts[flag];
    if (value === undefined) continue;
    if (/["\\]/.test(value)) problems.push(`--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${value}: no quotes or backslashes`);
    else clauses.push(`${key.name} = "${value}"`);
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
    .option('--dataset <sha256>', 'only those that read this data (the source sha256)')
    .option('--config <hash>', 'only those of this pipeline file text (config hash)')
    .option('--base-model <model>', 'only those that tuned this base model (model.base as configured)')
    .option('--code-version <version>', 'only those recorded by this code (git commit)')
    .option('--verdict <outcome>', 'only those that ended so: promoted, candidate, not-promoted, unchanged, failed, ...')
    .option('--started-by <who>', 'only those started by user@host, or "schedule <pipeline>.<id>"')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print a JSON array')
    .action(async (opts: RunsFilter & { limit: string; json?: boolean }) => {
      const query = runsQuery(opts);
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UserError(`--limit ${opts.limit}: a whole number of at least 1`);
      const session = await openSession({ clientOnly: true });
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
            datasetHash: attrs.get(SearchAttributes.datasetHash) ?? null,
            baseModel: attrs.get(SearchAttributes.baseModel) ?? null,
            codeVersion: attrs.get(SearchAttributes.codeVersion) ?? null,
            verdict: attrs.get(SearchAttributes.verdict) ?? null,
            startedBy: attrs.get(SearchAttributes.startedBy) ?? null,
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
        ['id', 'kind', 'pipeline', 'status', 'verdict', 'started', 'by'],
        ...listed.map((r) => [r.id, r.kind, r.pipeline ?? '', r.status, r.verdict ?? r.stage ?? '', r.startedAt, r.startedBy ?? '']),
      ];
      printTable(rows);
    });
}
