/**
 * `tuneline schedule apply | list | describe | trigger | pause | unpause | backfill`: the pipeline
 * file's `schedules:` made Temporal Schedules, and the hands-on controls ops need on them. Scheduled
 * runs need a server that outlives this command (`tuneline temporal start`, or a cluster) and
 * `tuneline worker` processes for both queues.
 */
import type { Command } from 'commander';
import { ScheduleNotFoundError, type Client } from '@temporalio/client';
import { SCHEDULE_OVERLAP, type Schedule } from '../../schemas/config';
import { UserError, loadConfigFile, requireValidConfig } from '../config';
import { OVERLAP, applyPlan, desiredSchedules, markOf, planSchedules, scheduleIdOf, type PlanItem } from '../schedules';
import { withSession } from '../session';
import { printTable } from '../table';

/** A schedule id as typed: `<pipeline>.<id>`, or a declared `<id>` of the pipeline file in this folder. */
function fullId(id: string, configPath: string): string {
  if (id.includes('.')) return id;
  const loaded = loadConfigFile(configPath);
  if (!loaded.config) throw new UserError(`${id}: give the schedule id as <pipeline>.<id> (see tuneline schedule list)`);
  return scheduleIdOf(loaded.config.name, id);
}

/** A session's client for `body`; a schedule the server lacks is a user's error that says where to look. */
const withClient = <T>(body: (client: Client) => Promise<T>): Promise<T> =>
  withSession(body).catch((err: unknown) => {
    if (err instanceof ScheduleNotFoundError)
      throw new UserError(`no schedule ${err.scheduleId} on the server; see tuneline schedule list`);
    throw err;
  });

const date = (text: string, flag: string): Date => {
  const parsed = Date.parse(text);
  if (Number.isNaN(parsed)) throw new UserError(`${flag} ${text}: not a date; give one like 2026-12-01 or 2026-12-01T08:00:00Z`);
  return new Date(parsed);
};

function printPlan(plan: PlanItem[], dryRun: boolean): void {
  const changing = plan.filter((p) => p.action !== 'unchanged');
  for (const item of plan)
    console.log(`  ${item.action.padEnd(9)} ${item.scheduleId}${item.changes.length ? `  (${item.changes.join('; ')})` : ''}`);
  if (changing.length === 0) console.log('No change: the server matches the file.');
  else console.log(dryRun ? `${changing.length} change(s) planned; nothing applied (--dry-run).` : `${changing.length} change(s) applied.`);
}

export function registerSchedule(program: Command): void {
  const schedule = program.command('schedule').description('Retraining schedules declared in the pipeline file, on the Temporal server.');

  schedule
    .command('apply')
    .description("Make the server's schedules match the file's `schedules:`: create, update, and delete those this pipeline made.")
    .option('-c, --config <file>', 'pipeline file', 'temporal.yaml')
    .option('--dry-run', 'print the plan and change nothing')
    .option('--json', 'print the plan as JSON')
    .action(async (opts: { config: string; dryRun?: boolean; json?: boolean }) => {
      const loaded = requireValidConfig(opts.config);
      const desired = desiredSchedules(loaded);
      await withClient(async (client) => {
        const plan = await planSchedules(client, loaded.config.name, desired);
        if (!opts.dryRun) await applyPlan(client, plan, desired);
        if (opts.json) console.log(JSON.stringify({ applied: !opts.dryRun, plan }));
        else printPlan(plan, Boolean(opts.dryRun));
      });
    });

  schedule
    .command('list')
    .description('The schedules tuneline made: state, next run, the last runs.')
    .option('--pipeline <name>', "only this pipeline's")
    .option('--json', 'print a JSON array')
    .action(async (opts: { pipeline?: string; json?: boolean }) => {
      await withClient(async (client) => {
        const rows = [];
        for await (const s of client.schedule.list()) {
          const owner = (s.memo as { tunelineOwner?: string } | undefined)?.tunelineOwner;
          if (!owner || (opts.pipeline && owner !== opts.pipeline)) continue;
          rows.push({
            id: s.scheduleId,
            pipeline: owner,
            paused: s.state.paused,
            note: s.state.note ?? null,
            nextRuns: (s.info?.nextActionTimes ?? []).slice(0, 3).map((t) => t.toISOString()),
            recentRuns: (s.info?.recentActions ?? []).map((a) => ({
              scheduledAt: a.scheduledAt.toISOString(),
              workflowId: a.action.workflow.workflowId,
            })),
          });
        }
        rows.sort((a, b) => (a.id < b.id ? -1 : 1));
        if (opts.json) return console.log(JSON.stringify(rows));
        if (rows.length === 0) return console.log('No schedules. Declare them under `schedules:` and run tuneline schedule apply.');
        printTable([
          ['id', 'state', 'next run', 'last run'],
          ...rows.map((r) => [r.id, r.paused ? 'paused' : 'active', r.nextRuns[0] ?? '-', r.recentRuns.at(-1)?.workflowId ?? '-']),
        ]);
      });
    });

  schedule
    .command('describe')
    .description('One schedule: its times, policies, state, the pipeline file it runs, its next and recent runs.')
    .argument('<id>', '<pipeline>.<id>, or the declared id of the pipeline file here')
    .option('-c, --config <file>', 'pipeline file that declares it', 'temporal.yaml')
    .option('--json', 'print one JSON object')
    .action(async (id: string, opts: { config: string; json?: boolean }) => {
      await withClient(async (client) => {
        const d = await client.schedule.getHandle(fullId(id, opts.config)).describe();
        const mark = markOf(d);
        const out = {
          id: d.scheduleId,
          paused: d.state.paused,
          note: d.state.note ?? null,
          spec: {
            calendars: d.spec.calendars ?? [],
            intervals: d.spec.intervals ?? [],
            timezone: d.spec.timezone ?? 'UTC',
            jitter: d.spec.jitter ?? null,
          },
          overlap: d.policies.overlap,
          catchupWindow: d.policies.catchupWindow,
          pipelineFile: mark?.pipelineFile ?? null,
          configHash: mark?.configHash ?? null,
          nextRuns: d.info.nextActionTimes.map((t) => t.toISOString()),
          recentRuns: d.info.recentActions.map((a) => ({
            scheduledAt: a.scheduledAt.toISOString(),
            workflowId: a.action.workflow.workflowId,
          })),
          runningRuns: d.info.runningActions.map((a) => a.workflow.workflowId),
          actions: d.info.numActionsTaken,
          skippedForOverlap: d.info.numActionsSkippedOverlap,
        };
        if (opts.json) return console.log(JSON.stringify(out, null, 2));
        console.log(`${out.id}: ${out.paused ? `paused${out.note ? ` (${out.note})` : ''}` : 'active'}`);
        console.log(
          `  runs ${out.pipelineFile ?? '(not made by tuneline)'} (config ${out.configHash ?? '?'}), overlap ${out.overlap}, catch-up ${out.catchupWindow} ms`,
        );
        console.log(`  next: ${out.nextRuns.slice(0, 3).join(', ') || '-'}`);
        console.log(
          `  ${out.actions} run(s) started, ${out.skippedForOverlap} skipped for overlap; running: ${out.runningRuns.join(', ') || 'none'}`,
        );
        for (const r of out.recentRuns) console.log(`  ${r.scheduledAt}  ${r.workflowId}`);
      });
    });

  schedule
    .command('trigger')
    .description('Start a run now, whatever the calendar says (even when paused).')
    .argument('<id>', '<pipeline>.<id>, or the declared id of the pipeline file here')
    .option('-c, --config <file>', 'pipeline file that declares it', 'temporal.yaml')
    .action(async (id: string, opts: { config: string }) => {
      const scheduleId = fullId(id, opts.config);
      await withClient(async (client) => {
        await client.schedule.getHandle(scheduleId).trigger();
        console.log(`Triggered ${scheduleId}; tuneline schedule describe ${scheduleId} shows the run it started.`);
      });
    });

  for (const [verb, what] of [
    ['pause', 'Stop starting runs until unpaused (runs already going go on).'],
    ['unpause', 'Start runs on schedule again.'],
  ] as const)
    schedule
      .command(verb)
      .description(what)
      .argument('<id>', '<pipeline>.<id>, or the declared id of the pipeline file here')
      .option('-c, --config <file>', 'pipeline file that declares it', 'temporal.yaml')
      .option('--note <text>', 'why, shown by describe and in the Web UI')
      .action(async (id: string, opts: { config: string; note?: string }) => {
        const scheduleId = fullId(id, opts.config);
        await withClient(async (client) => {
          const handle = client.schedule.getHandle(scheduleId);
          await (verb === 'pause' ? handle.pause(opts.note) : handle.unpause(opts.note));
          console.log(`${verb === 'pause' ? 'Paused' : 'Unpaused'} ${scheduleId}.`);
        });
      });

  schedule
    .command('backfill')
    .description('Start the runs the schedule would have started between FROM and TO (e.g. after an outage).')
    .argument('<id>', '<pipeline>.<id>, or the declared id of the pipeline file here')
    .argument('<from>', 'start of the window, a date or time')
    .argument('<to>', 'end of the window')
    .option('-c, --config <file>', 'pipeline file that declares it', 'temporal.yaml')
    .option('--overlap <policy>', `${SCHEDULE_OVERLAP.join(', ')}; the schedule's own when absent`)
    .action(async (id: string, from: string, to: string, opts: { config: string; overlap?: string }) => {
      const scheduleId = fullId(id, opts.config);
      const start = date(from, 'FROM');
      const end = date(to, 'TO');
      const problems = [
        ...(end <= start ? [`TO ${to} is not after FROM ${from}`] : []),
        ...(opts.overlap && !(SCHEDULE_OVERLAP as readonly string[]).includes(opts.overlap)
          ? [`--overlap ${opts.overlap}: one of ${SCHEDULE_OVERLAP.join(', ')}`]
          : []),
      ];
      if (problems.length > 0) throw new UserError(problems.join('\n'));
      await withClient(async (client) => {
        await client.schedule
          .getHandle(scheduleId)
          .backfill({ start, end, ...(opts.overlap ? { overlap: OVERLAP[opts.overlap as Schedule['overlap']] } : {}) });
        console.log(`Backfilling ${scheduleId} from ${start.toISOString()} to ${end.toISOString()}.`);
      });
    });
}
