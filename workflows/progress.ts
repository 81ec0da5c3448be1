/**
 * What every stage workflow shares: its `progress` query (stage, step lines, children), the stage
 * search attribute, running a step as a progress line, running a child stage workflow, and turning
 * a user's error into the workflow's own failure. Presentation stays in the activities: a step's
 * line is the summary its activity wrote.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  ChildWorkflowFailure,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { ChildProgress, StageName, StepProgress, StepResult, WorkflowProgress } from '../schemas/manifests';
import { SearchAttributes, progressQuery } from './definitions';

/** The innermost cause of an activity or child workflow failure: the error an activity threw. */
export function rootCause(err: unknown): unknown {
  let cause = err;
  while ((cause instanceof ActivityFailure || cause instanceof ChildWorkflowFailure) && cause.cause) cause = cause.cause;
  return cause;
}

/** A user's error (non-retryable) as this workflow's own failure, so `tuneline status` and the Web UI show it first. */
export function asWorkflowFailure(err: unknown): unknown {
  const cause = rootCause(err);
  if (cause instanceof ApplicationFailure && cause.nonRetryable)
    return ApplicationFailure.nonRetryable(cause.message, cause.type ?? undefined);
  return err;
}

/** Options of a stage workflow started as a child: its deterministic id, and this run's search attributes (pipeline, config hash). */
export function childOptions(workflowId: string) {
  return { workflowId, typedSearchAttributes: workflowInfo().typedSearchAttributes };
}

export class StageTracker {
  readonly progress: WorkflowProgress;

  constructor(stage: StageName) {
    this.progress = { stage, steps: [], children: [] };
    setHandler(progressQuery, () => this.progress);
  }

  enter(stage: StageName): void {
    this.progress.stage = stage;
    upsertSearchAttributes([{ key: SearchAttributes.stage, value: stage }]);
  }

  /** Runs one step as a progress line named `name` (the stage's name by default). */
  async step<R extends StepResult<unknown, string>>(stage: StageName, run: () => Promise<R>, name: string = stage): Promise<R> {
    this.enter(stage);
    const line: StepProgress = { step: name, status: 'running' };
    this.progress.steps.push(line);
    const result = await run();
    Object.assign(line, { status: result.reused ? 'reused' : 'done', seconds: result.seconds, summary: result.summary });
    return result;
  }

  /** A line for what the workflow decided itself, with no activity behind it to time. */
  decided(name: string, summary: string): void {
    this.progress.steps.push({ step: name, status: 'done', seconds: 0, summary });
  }

  /** The running line of a step that gave up without failing the workflow, and why. */
  skipped(name: string, reason: string): void {
    const line = this.progress.steps.find((s) => s.step === name && s.status === 'running');
    if (line) Object.assign(line, { status: 'done', summary: `skipped: ${reason}` });
  }

  /**
   * Follows a stage workflow started as a child by `run`: while it runs, clients follow its own
   * progress; when it ends, its step lines join this workflow's.
   */
  async child<R extends { progress: StepProgress[] }>(kind: ChildProgress['kind'], workflowId: string, run: () => Promise<R>): Promise<R> {
    const entry: ChildProgress = { workflowId, kind, status: 'running' };
    this.progress.children.push(entry);
    try {
      const result = await run();
      entry.status = 'completed';
      this.progress.steps.push(...result.progress);
      return result;
    } catch (err) {
      entry.status = 'failed';
      throw err;
    }
  }

  /** Marks the running line and the stage failed, with the user's message. */
  fail(err: unknown): void {
    const cause = rootCause(err);
    this.progress.error = cause instanceof Error ? cause.message : String(cause);
    for (const line of this.progress.steps) if (line.status === 'running') line.status = 'failed';
    this.enter('failed');
  }
}
