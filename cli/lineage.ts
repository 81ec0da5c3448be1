/**
 * A run's lineage, for `tuneline audit report`: rebuilt from the run's recorded histories (its own
 * and its stage workflows') and its run manifest alone, plus the registry's record of who promoted
 * it. The history says what ran when, how often and who started it; the manifest says what each step
 * read and wrote, with hashes; the report checks that the manifest is the one the history recorded.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';
import type { temporal } from '@temporalio/proto';
import { readRegistryLog, registryFolder, type RegistryEvent } from '../activities/registry';
import { sha256File } from '../activities/artifacts';
import { PipelineConfig } from '../schemas/config';
import { RunManifest, type ArtifactRef, type PipelineInput, type ReviewState, type StartedBy } from '../schemas/manifests';
import { reviewSummary } from '../workflows/review';
import { renderMarkdown, type Block } from '../activities/report/document';
import { metricTableBlock } from '../activities/report/metric-table';
import { recordedWorkflows } from './audit';
import { decodePayload, recordFolderOf } from './client';
import { UserError } from './config';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

export interface ActivityRecord {
  workflowId: string;
  activity: string;
  scheduledAt: string;
  closedAt: string | null;
  seconds: number | null;
  /** The attempt that ended it: above 1 means it was retried (a crash, a lost worker, a timeout). */
  attempts: number;
  status: 'completed' | 'failed' | 'timed-out' | 'canceled' | 'running';
  /** Why the last failed attempt failed, when one did. */
  lastFailure: string | null;
}

export interface Lineage {
  runId: string;
  pipeline: string;
  status: RunManifest['status'];
  outcome: RunManifest['outcome'];
  error: string | null;
  startedAt: string;
  closedAt: string | null;
  startedBy: StartedBy | null;
  schedule: string | null;
  config: { file: string | null; hash: string; resolved: unknown };
  code: RunManifest['code'];
  baseModel: RunManifest['baseModel'];
  data: RunManifest['data'];
  /** The run manifest and whether it is the one the workflow recorded last (same hash as in the history). */
  manifest: { path: string; sha256: string; recordedInHistory: string | null; matchesHistory: boolean };
  workflows: Array<{ workflowId: string; runId: string; type: string; startedAt: string; closedAt: string | null; status: string }>;
  activities: ActivityRecord[];
  steps: RunManifest['steps'];
  /** Training that went on from a checkpoint after its attempt died, with the step it resumed at. */
  resumes: Array<{ step: string; attempt: number; resumedFromStep: number }>;
  metrics: RunManifest['metrics'];
  gate: RunManifest['gate'];
  /** Human review: every vote with its reviewer and time, the satisfaction and how it ended. */
  review: ReviewState | null;
  artifacts: Record<string, ArtifactRef>;
  /** Registry moves that named this run: who promoted it (or rolled back to or away from it), when and why. */
  approvals: RegistryEvent[];
}

const CLOSE_KINDS = ['Completed', 'Failed', 'Canceled', 'Terminated', 'TimedOut', 'ContinuedAsNew'] as const;
const iso = (ms: number | undefined | null) => (ms ? new Date(ms).toISOString() : null);
const eventTime = (e: HistoryEvent) => tsToMs(e.eventTime);

/** Every activity of one history: scheduled, its last attempt, how it ended. */
function activitiesOf(workflowId: string, events: HistoryEvent[]): ActivityRecord[] {
  const byScheduled = new Map<string, ActivityRecord>();
  for (const e of events) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) {
      byScheduled.set(String(e.eventId), {
        workflowId,
        activity: scheduled.activityType?.name ?? '?',
        scheduledAt: iso(eventTime(e))!,
        closedAt: null,
        seconds: null,
        attempts: 1,
        status: 'running',
        lastFailure: null,
      });
      continue;
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const record = byScheduled.get(String(started.scheduledEventId));
      if (record) {
        record.attempts = started.attempt ?? 1;
        record.lastFailure = started.lastFailure?.message ?? null;
      }
      continue;
    }
    const ended =
      (e.activityTaskCompletedEventAttributes && (['completed', e.activityTaskCompletedEventAttributes] as const)) ||
      (e.activityTaskFailedEventAttributes && (['failed', e.activityTaskFailedEventAttributes] as const)) ||
      (e.activityTaskTimedOutEventAttributes && (['timed-out', e.activityTaskTimedOutEventAttributes] as const)) ||
      (e.activityTaskCanceledEventAttributes && (['canceled', e.activityTaskCanceledEventAttributes] as const));
    if (ended) {
      const record = byScheduled.get(String(ended[1].scheduledEventId));
      if (!record) continue;
      record.status = ended[0];
      record.closedAt = iso(eventTime(e));
      record.seconds = Math.round((eventTime(e) - Date.parse(record.scheduledAt)) / 100) / 10;
      const failure = 'failure' in ended[1] ? ended[1].failure : undefined;
      if (failure) record.lastFailure = failure.cause?.message ?? failure.message ?? record.lastFailure;
    }
  }
  return [...byScheduled.values()];
}

/** The lineage of one run (a `finetunePipeline` workflow id). */
export async function buildLineage(client: Client, runId: string): Promise<Lineage> {
  const recorded = await recordedWorkflows(client, runId);
  const own = recorded.filter((r) => r.workflowId === runId);
  if (own.length === 0 || !own[0]!.history.events?.length) throw new UserError(`${runId}: no such workflow on the server`);
  const first = own[0]!.history.events![0]!;
  const startedAttributes = first.workflowExecutionStartedEventAttributes!;
  if (startedAttributes.workflowType?.name !== 'finetunePipeline')
    throw new UserError(`${runId} is a ${startedAttributes.workflowType?.name} workflow; audit report reads pipeline runs`);
  const input = await decodePayload<PipelineInput>(client, startedAttributes.input?.payloads);

  const folder = recordFolderOf(input, runId);
  const manifestPath = join(folder, 'run.json');
  if (!existsSync(manifestPath)) throw new UserError(`${runId}: its run manifest ${manifestPath} is gone; the lineage needs it`);
  const manifest = RunManifest.parse(JSON.parse(readFileSync(manifestPath, 'utf8')));

  // The manifest the workflow recorded last: the result of its last recordRun activity.
  const ownEvents = own.flatMap((r) => r.history.events ?? []);
  const recordScheduled = new Set(
    ownEvents.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'recordRun').map((e) => String(e.eventId)),
  );
  const lastRecord = ownEvents.filter((e) => recordScheduled.has(String(e.activityTaskCompletedEventAttributes?.scheduledEventId))).at(-1);
  const recordedRef = lastRecord
    ? await decodePayload<{ manifest: ArtifactRef }>(client, lastRecord.activityTaskCompletedEventAttributes!.result?.payloads)
    : null;
  const manifestHash = await sha256File(manifestPath);

  const workflows = recorded.map((r) => {
    const events = r.history.events ?? [];
    const closing = events.at(-1);
    const closed = CLOSE_KINDS.find((kind) => closing?.[`workflowExecution${kind}EventAttributes` as keyof HistoryEvent]);
    return {
      workflowId: r.workflowId,
      runId: r.runId,
      type: events[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name ?? '?',
      startedAt: iso(events[0] ? eventTime(events[0]) : null)!,
      closedAt: closed ? iso(eventTime(closing!)) : null,
      status: closed?.toLowerCase() ?? 'running',
    };
  });

  const config = PipelineConfig.safeParse(manifest.config.resolved);
  const approvals = config.success
    ? readRegistryLog(registryFolder(config.data, input.configDir)).filter((e) => e.runId === runId || e.previous === runId)
    : [];
  const resumes = manifest.steps.flatMap((s) => {
    const from = (s.stats as { resumedFromStep?: number | null } | null)?.resumedFromStep;
    return typeof from === 'number' && from > 0 ? [{ step: s.step, attempt: s.attempt, resumedFromStep: from }] : [];
  });

  return {
    runId,
    pipeline: manifest.pipeline,
    status: manifest.status,
    outcome: manifest.outcome,
    error: manifest.error,
    startedAt: workflows[0]!.startedAt,
    closedAt: workflows.filter((w) => w.workflowId === runId).at(-1)!.closedAt,
    startedBy: input.startedBy ?? null,
    schedule: input.schedule ?? null,
    config: { file: manifest.config.file, hash: manifest.config.hash, resolved: manifest.config.resolved },
    code: manifest.code,
    baseModel: manifest.baseModel,
    data: manifest.data,
    manifest: {
      path: manifestPath,
      sha256: manifestHash,
      recordedInHistory: recordedRef?.manifest.sha256 ?? null,
      matchesHistory: recordedRef?.manifest.sha256 === manifestHash,
    },
    workflows,
    activities: recorded.flatMap((r) => activitiesOf(r.workflowId, r.history.events ?? [])),
    steps: manifest.steps,
    resumes,
    metrics: manifest.metrics,
    gate: manifest.gate,
    review: manifest.review ?? null,
    artifacts: manifest.artifacts,
    approvals,
  };
}

/** A table block whose cells are shown as they are (booleans and missing values in words). */
const table = (header: string[], rows: unknown[][]): Block => ({
  kind: 'table',
  header,
  rows: rows.map((row) => row.map((v) => (typeof v === 'number' || typeof v === 'string' ? v : v == null ? null : String(v)))),
});
const section = (title: string, ...blocks: Block[]): Block[] => [{ kind: 'heading', level: 2, text: title }, ...blocks];
const paragraph = (text: string): Block => ({ kind: 'paragraph', text });

/** The lineage as a Markdown document for people, in the report's blocks (activities/report/document.ts). */
export function lineageMarkdown(l: Lineage): string {
  const by = l.startedBy ? `${l.startedBy.user}@${l.startedBy.host} (${l.startedBy.command}, in ${l.startedBy.cwd})` : 'unknown';
  const manifest = l.manifest.matchesHistory
    ? 'the one the history recorded'
    : `the history recorded ${l.manifest.recordedInHistory ?? 'none'}: DIFFERS`;
  const data = l.data
    ? `${l.data.path ?? 'generated sample set'}: sha256 ${l.data.source.sha256}, ${l.data.source.bytes} bytes${l.data.snapshot ? ' (snapshot in the store)' : ''}`
    : '-';
  return renderMarkdown([
    { kind: 'heading', level: 1, text: `Lineage of run ${l.runId}` },
    paragraph(
      `Pipeline **${l.pipeline}**, ${l.status}, outcome **${l.outcome ?? '-'}**${l.error ? `, error: ${l.error}` : ''}. ` +
        `Started ${l.startedAt} by ${by}${l.schedule ? ` on schedule ${l.schedule}` : ''}; closed ${l.closedAt ?? '(still running)'}.`,
    ),
    ...section(
      'Inputs',
      table(
        ['what', 'identity'],
        [
          ['pipeline file', `${l.config.file ?? '(in memory)'}, config hash ${l.config.hash}`],
          ['data', data],
          ['base model', l.baseModel ? JSON.stringify(l.baseModel) : '-'],
          ['code', `${l.code.version}, commit ${l.code.commit ?? '-'}, sources ${l.code.sources}`],
          ['run manifest', `${l.manifest.path}: sha256 ${l.manifest.sha256} (${manifest})`],
        ],
      ),
    ),
    ...section(
      'Workflows',
      table(
        ['workflow', 'type', 'started', 'closed', 'status'],
        l.workflows.map((w) => [w.workflowId, w.type, w.startedAt, w.closedAt, w.status]),
      ),
    ),
    ...section(
      'Activities',
      table(
        ['workflow', 'activity', 'scheduled', 'seconds', 'attempts', 'status', 'last failure'],
        l.activities.map((a) => [a.workflowId, a.activity, a.scheduledAt, a.seconds, a.attempts, a.status, a.lastFailure]),
      ),
      paragraph(
        l.resumes.length
          ? `Resumed from a checkpoint: ${l.resumes.map((r) => `${r.step} at step ${r.resumedFromStep} (attempt ${r.attempt})`).join('; ')}.`
          : 'No step resumed from a checkpoint.',
      ),
    ),
    ...section(
      'Steps and their artifacts',
      table(
        ['stage', 'step', 'reused', 'attempt', 'seconds', 'cache key', 'outputs (sha256)'],
        l.steps.map((s) => [
          s.stage,
          s.step,
          s.reused,
          s.attempt,
          s.seconds,
          s.key,
          Object.entries(s.outputs)
            .map(([n, r]) => `${n} ${r.sha256}`)
            .join('; '),
        ]),
      ),
    ),
    ...section('Metrics', l.metrics ? metricTableBlock(l.metrics) : paragraph('Not evaluated.')),
    ...section(
      'Gates',
      ...(l.gate
        ? [
            paragraph(`${l.gate.verdict} (served system ${l.gate.system})`),
            table(
              ['gate', 'value', 'status'],
              l.gate.results.map((r) => [r.rule, r.value, r.status]),
            ),
          ]
        : [paragraph('No gate decision.')]),
    ),
    ...section(
      'Human review',
      ...(l.review
        ? [
            paragraph(reviewSummary(l.review)),
            table(
              ['when', 'reviewer', 'item', 'verdict', 'correction'],
              l.review.votes.map((v) => [v.at, v.reviewer, v.itemId, v.verdict, v.correction]),
            ),
          ]
        : [paragraph('No human review.')]),
    ),
    ...section(
      'Approvals',
      l.approvals.length
        ? table(
            ['when', 'action', 'run', 'by', 'reason', 'forced'],
            l.approvals.map((e) => [e.at, e.action, e.runId, e.by, e.reason, e.forced]),
          )
        : paragraph('Nobody promoted this run.'),
    ),
    ...section(
      'Files',
      table(
        ['name', 'sha256', 'bytes', 'uri'],
        Object.entries(l.artifacts).map(([n, r]) => [n, r.sha256, r.bytes, r.uri]),
      ),
    ),
  ]);
}
