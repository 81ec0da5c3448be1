/**
 * `tuneline audit replay | export | report | verify`: whether recorded histories still replay against
 * this checkout's workflow code, a history in the replayable JSON format, a run's lineage, and whether
 * every artifact a run or sweep names is still the one it recorded.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { RunManifest } from '../../schemas/manifests';
import { historyJson, manifestArtifacts, recordedWorkflows, replayWorkflows, verifyArtifacts, type RecordedWorkflow } from '../audit';
import { recordFolder } from '../client';
import { buildLineage, lineageMarkdown } from '../lineage';
import { keyErrorOf } from '../../lib/encryption';
import { installWorkerLogging } from '../../workers/create';
import { UserError } from '../config';
import { workerLogPath } from '../logs';
import { openSession, withSession } from '../session';

/** The top-level workflows (runs and sweeps) to replay: started since `since`, or all. */
async function topLevelIds(session: Awaited<ReturnType<typeof openSession>>, since?: string): Promise<string[]> {
  const clauses = [`WorkflowType IN ("finetunePipeline", "sweep")`];
  if (since) {
    if (Number.isNaN(Date.parse(since)))
      throw new UserError(`--since ${since}: not a date; give one like 2026-12-01 or 2026-12-01T08:00:00Z`);
    clauses.push(`StartTime >= "${new Date(since).toISOString()}"`);
  }
  const ids = new Set<string>();
  for await (const w of session.client.workflow.list({ query: clauses.join(' AND ') })) ids.add(w.workflowId);
  return [...ids];
}

/** A run's `run.json` or a sweep's `sweep.json`: a path to one, or the id of a workflow that wrote one. */
async function readRecord(target: string): Promise<{ path: string; manifest: Pick<RunManifest, 'data' | 'steps' | 'artifacts'> }> {
  let path = target;
  if (!existsSync(target)) {
    const session = await openSession({ clientOnly: true });
    try {
      const folder = await recordFolder(session.client.workflow.getHandle(target)).catch(() => undefined);
      path = [join(folder ?? '', 'run.json'), join(folder ?? '', 'sweep.json')].find((p) => folder && existsSync(p)) ?? '';
      if (!path)
        throw new UserError(`${target}: no run.json or sweep.json found for it (is it a run or sweep id, and has it recorded one?)`);
    } finally {
      await session.close();
    }
  }
  return { path, manifest: JSON.parse(readFileSync(path, 'utf8')) as RunManifest };
}

export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('Check recorded runs: histories against the code, artifacts against their hashes.');

  audit
    .command('replay')
    .description(
      "Replay recorded histories (a run's or sweep's, with every child and continued run) against this checkout's workflow code.",
    )
    .argument('[workflow-id]', 'a run or sweep id')
    .option('--all', 'every run and sweep the server has')
    .option('--since <date>', 'runs and sweeps started since this date')
    .option('--json', 'print one JSON object per history')
    .action(async (workflowId: string | undefined, opts: { all?: boolean; since?: string; json?: boolean }) => {
      if ([workflowId !== undefined, opts.all, opts.since !== undefined].filter(Boolean).length !== 1)
        throw new UserError('name one workflow id, or give --all or --since DATE');
      const session = await openSession({ clientOnly: true });
      let recorded: RecordedWorkflow[] = [];
      try {
        const ids = workflowId ? [workflowId] : await topLevelIds(session, opts.since);
        for (const id of ids) recorded.push(...(await recordedWorkflows(session.client, id)));
      } catch (err) {
        if (err instanceof UserError) throw err;
        throw new UserError(`could not fetch the histories: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        await session.close();
      }
      recorded = recorded.filter((r) => (r.history.events?.length ?? 0) > 0);
      if (recorded.length === 0) throw new UserError('no recorded history to replay');
      // The replay worker's own log lines go where a worker's do, not between the results.
      installWorkerLogging(workerLogPath());
      const outcomes = await replayWorkflows(recorded);
      for (const o of outcomes) {
        if (opts.json) console.log(JSON.stringify(o));
        else console.log(o.error === null ? `replays  ${o.workflowId} (${o.runId})` : `BREAKS   ${o.workflowId} (${o.runId}): ${o.error}`);
      }
      const broken = outcomes.filter((o) => o.error !== null).length;
      if (!opts.json) console.log(`${outcomes.length - broken} of ${outcomes.length} histories replay against this code.`);
      if (broken > 0) process.exitCode = 1;
    });

  audit
    .command('export')
    .description("Write a workflow's history in the replayable JSON format (its latest run).")
    .argument('<workflow-id>')
    .requiredOption('-o, --output <file>', 'where to write it')
    .action(async (workflowId: string, opts: { output: string }) => {
      const history = await withSession((client) => client.workflow.getHandle(workflowId).fetchHistory(), { clientOnly: true });
      writeFileSync(opts.output, historyJson(history) + '\n');
      console.log(`${opts.output}: ${history.events?.length ?? 0} events of ${workflowId}`);
    });

  audit
    .command('report')
    .description(
      'The lineage of a run, from its recorded histories and run manifest: inputs with hashes, every activity with its ' +
        'attempts and timings, every step with its artifacts, metrics, gate decisions, resumes, who started and who promoted it.',
    )
    .argument('<run-id>')
    .option('--format <format>', 'md or json', 'md')
    .option('-o, --output <file>', 'write it here instead of printing it')
    .action(async (runId: string, opts: { format: string; output?: string }) => {
      if (opts.format !== 'md' && opts.format !== 'json') throw new UserError(`--format ${opts.format}: md or json`);
      const lineage = await withSession((client) => buildLineage(client, runId), { clientOnly: true }).catch((err: unknown) => {
        if (err instanceof UserError) throw err;
        const keyError = keyErrorOf(err);
        if (keyError) throw keyError;
        throw new UserError(`could not read the history of ${runId}: ${err instanceof Error ? err.message : String(err)}`);
      });
      const text = opts.format === 'json' ? JSON.stringify(lineage, null, 2) : lineageMarkdown(lineage);
      if (opts.output) {
        writeFileSync(opts.output, text + '\n');
        console.log(`${opts.output}: lineage of ${runId}`);
      } else console.log(text);
    });

  audit
    .command('verify')
    .description('Hash every artifact a run or sweep names again; exit 1 when one changed or vanished.')
    .argument('<run>', 'a run or sweep id, or the path of its run.json or sweep.json')
    .option('--json', 'print every check as JSON')
    .action(async (target: string, opts: { json?: boolean }) => {
      const { path, manifest } = await readRecord(target);
      const checks = await verifyArtifacts(manifestArtifacts(manifest));
      const bad = checks.filter((c) => c.status !== 'intact');
      if (opts.json) console.log(JSON.stringify({ manifest: path, checks }));
      else {
        for (const c of bad)
          console.log(
            `${c.status.toUpperCase().padEnd(8)} ${c.names[0]}${c.names.length > 1 ? ` (and ${c.names.length - 1} more)` : ''}: ` +
              `${c.ref.uri}${c.found ? `, sha256 ${c.found.slice(0, 12)} where ${c.ref.sha256.slice(0, 12)} was recorded` : ''}`,
          );
        console.log(`${path}: ${checks.length - bad.length} of ${checks.length} artifacts intact.`);
      }
      if (bad.length > 0) process.exitCode = 1;
    });
}
