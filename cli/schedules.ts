/**
 * Declared schedules: `schedules:` in a pipeline file made Temporal Schedules. Each is
 * `<pipeline>.<id>` on the server; its action starts `finetunePipeline` with the config of the file it
 * names as that file was when applied (the data file is read when each run starts). A fingerprint of
 * the declaration and that config rides in the action's memo, so `apply` can tell what changed.
 */
import { dirname, resolve } from 'node:path';
import {
  ScheduleNotFoundError,
  type Client,
  type ScheduleDescription,
  type ScheduleOptions,
  type ScheduleOverlapPolicy,
} from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import { canonicalJson, sha256Hex } from '../activities/artifacts';
import type { PipelineConfig, Schedule } from '../schemas/config';
import type { PipelineInput } from '../schemas/manifests';
import { TaskQueues } from '../workflows/definitions';
import { startAttributes, startInput } from './client';
import { requireValidConfig, type LoadedConfig } from './config';

/** The Temporal schedule id of a declared schedule. */
export const scheduleIdOf = (pipeline: string, id: string) => `${pipeline}.${id}`;

/** Temporal's name of each overlap policy. */
export const OVERLAP: Record<Schedule['overlap'], ScheduleOverlapPolicy> = {
  skip: 'SKIP',
  'buffer-one': 'BUFFER_ONE',
  'buffer-all': 'BUFFER_ALL',
  'cancel-other': 'CANCEL_OTHER',
  'allow-all': 'ALLOW_ALL',
};

/** What the action's memo carries: whose schedule it is and the fingerprint `apply` compares. */
export interface ScheduleMark {
  owner: string;
  fingerprint: string;
  /** Of the declaration alone (without `paused`). */
  declaration: string;
  /** The pipeline file the runs start from, and its hash when applied. */
  pipelineFile: string;
  configHash: string;
}

export interface DesiredSchedule {
  scheduleId: string;
  declared: Schedule;
  /** The pipeline file its runs run (this file unless `pipeline:` names another), validated. */
  target: LoadedConfig & { config: PipelineConfig };
  mark: ScheduleMark;
}

/** The schedules the file declares, each with the pipeline file it runs loaded and validated. */
export function desiredSchedules(loaded: LoadedConfig & { config: PipelineConfig }): DesiredSchedule[] {
  return loaded.config.schedules.map((declared) => {
    const target = declared.pipeline ? requireValidConfig(resolve(dirname(loaded.path), declared.pipeline)) : loaded;
    // Paused is state, not definition: a pause by hand is seen and undone by comparing it, not the fingerprint.
    const { paused: _paused, ...definition } = declared;
    const declaration = sha256Hex(canonicalJson(definition)).slice(0, 16);
    const fingerprint = sha256Hex(canonicalJson({ declaration, pipelineFile: target.path, configHash: target.configHash })).slice(0, 16);
    return {
      scheduleId: scheduleIdOf(loaded.config.name, declared.id),
      declared,
      target,
      mark: { owner: loaded.config.name, fingerprint, declaration, pipelineFile: target.path, configHash: target.configHash },
    };
  });
}

/** The Temporal schedule for a declaration: its times, policies, state and the run it starts. */
export function scheduleOptions(desired: DesiredSchedule): ScheduleOptions {
  const { declared, target, scheduleId } = desired;
  const input: PipelineInput = {
    ...startInput(target, { command: `tuneline schedule apply (${scheduleId})` }),
    onlyIfChanged: declared.onlyIfChanged,
    schedule: scheduleId,
  };
  const attributes = startAttributes(target.config.name, input);
  return {
    scheduleId,
    spec: {
      ...(declared.cron ? { cronExpressions: [declared.cron] } : { intervals: [{ every: declared.every as Duration }] }),
      timezone: declared.timezone,
      ...(declared.jitter ? { jitter: declared.jitter as Duration } : {}),
    },
    action: {
      type: 'startWorkflow',
      workflowType: 'finetunePipeline',
      taskQueue: TaskQueues.cpu,
      // The server appends the scheduled time: `<pipeline>-scheduled-<id>-2026-12-07T03:00:00Z`.
      workflowId: `${target.config.name}-scheduled-${declared.id}`,
      args: [input],
      typedSearchAttributes: attributes.typedSearchAttributes,
      memo: { ...attributes.memo, tunelineSchedule: desired.mark },
    },
    policies: { overlap: OVERLAP[declared.overlap], catchupWindow: declared.catchupWindow as Duration },
    state: { paused: declared.paused, note: declared.note ?? (declared.paused ? 'declared paused' : undefined) },
    memo: { tunelineOwner: desired.mark.owner },
  };
}

/** The mark a schedule's action carries, if tuneline made it. */
export function markOf(description: Pick<ScheduleDescription, 'action'>): ScheduleMark | undefined {
  const memo = description.action.type === 'startWorkflow' ? description.action.memo : undefined;
  return (memo?.tunelineSchedule as ScheduleMark | undefined) ?? undefined;
}

export interface PlanItem {
  scheduleId: string;
  action: 'create' | 'update' | 'delete' | 'unchanged';
  /** What differs, in words; empty when unchanged. */
  changes: string[];
}

async function describeOrNull(client: Client, scheduleId: string): Promise<ScheduleDescription | null> {
  try {
    return await client.schedule.getHandle(scheduleId).describe();
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return null;
    throw err;
  }
}

/** The ids of the schedules on the server this pipeline made (listing is eventually consistent). */
export async function ownedScheduleIds(client: Client, owner: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const s of client.schedule.list())
    if (s.scheduleId.startsWith(`${owner}.`) && (s.memo as { tunelineOwner?: string } | undefined)?.tunelineOwner === owner)
      ids.push(s.scheduleId);
  return ids.sort();
}

/** What `apply` would do: create what is missing, update what differs, delete what the file no longer declares. */
export async function planSchedules(client: Client, owner: string, desired: DesiredSchedule[]): Promise<PlanItem[]> {
  const plan: PlanItem[] = [];
  for (const want of desired) {
    const have = await describeOrNull(client, want.scheduleId);
    if (!have) {
      plan.push({ scheduleId: want.scheduleId, action: 'create', changes: ['new'] });
      continue;
    }
    const mark = markOf(have);
    const changes: string[] = [];
    if (!mark) changes.push('not made by tuneline: replaced by the declared one');
    else if (mark.fingerprint !== want.mark.fingerprint) {
      if (mark.declaration !== want.mark.declaration) changes.push('schedule declaration changed');
      if (mark.pipelineFile !== want.mark.pipelineFile) changes.push(`runs ${want.mark.pipelineFile} instead of ${mark.pipelineFile}`);
      else if (mark.configHash !== want.mark.configHash)
        changes.push(`pipeline ${want.mark.pipelineFile} changed (config ${mark.configHash} -> ${want.mark.configHash})`);
    }
    if (have.state.paused !== want.declared.paused)
      changes.push(want.declared.paused ? 'pause (declared paused)' : 'unpause (declared running)');
    plan.push({ scheduleId: want.scheduleId, action: changes.length ? 'update' : 'unchanged', changes });
  }
  const declared = new Set(desired.map((d) => d.scheduleId));
  for (const id of await ownedScheduleIds(client, owner))
    if (!declared.has(id)) plan.push({ scheduleId: id, action: 'delete', changes: ['no longer declared'] });
  return plan;
}

/** Carries out a plan from `planSchedules`. */
export async function applyPlan(client: Client, plan: PlanItem[], desired: DesiredSchedule[]): Promise<void> {
  for (const item of plan) {
    const handle = client.schedule.getHandle(item.scheduleId);
    const want = desired.find((d) => d.scheduleId === item.scheduleId);
    if (item.action === 'delete') await handle.delete();
    else if (item.action === 'create') await client.schedule.create(scheduleOptions(want!));
    else if (item.action === 'update') {
      const { spec, action, policies, state } = scheduleOptions(want!);
      await handle.update((previous) => ({ ...previous, spec, action, policies, state: { ...previous.state, note: state?.note } }));
      const paused = (await handle.describe()).state.paused;
      if (paused && !want!.declared.paused) await handle.unpause('declared running in the pipeline file');
      if (!paused && want!.declared.paused) await handle.pause(want!.declared.note ?? 'declared paused in the pipeline file');
    }
  }
}
