/**
 * Names shared by workflows, workers and clients: task queues, search attributes, queries, child
 * workflow ids. Dependency-free apart from Temporal's own definitions, so the workflow bundle can import it.
 */
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { ReviewState, ReviewVote, SweepProgress, WorkflowProgress } from '../schemas/manifests';

export const TaskQueues = { cpu: 'tuneline-cpu', gpu: 'tuneline-gpu' } as const;
export type QueueName = keyof typeof TaskQueues;

export const SearchAttributes = {
  stage: defineSearchAttributeKey('TunelineStage', SearchAttributeType.KEYWORD),
  pipeline: defineSearchAttributeKey('TunelinePipeline', SearchAttributeType.KEYWORD),
  configHash: defineSearchAttributeKey('TunelineConfigHash', SearchAttributeType.KEYWORD),
  /** A sweep's id, on the sweep and every workflow it starts: `TunelineSweep = "<id>"` lists them together. */
  sweep: defineSearchAttributeKey('TunelineSweep', SearchAttributeType.KEYWORD),
  /** Of the data the run read (the source snapshot's sha256), set after the data stage. */
  datasetHash: defineSearchAttributeKey('TunelineDatasetHash', SearchAttributeType.KEYWORD),
  /** `model.base` as configured (a folder, a GGUF file or a hub id). */
  baseModel: defineSearchAttributeKey('TunelineBaseModel', SearchAttributeType.KEYWORD),
  /** The git commit (or package version and sources hash) of the worker that recorded the run. */
  codeVersion: defineSearchAttributeKey('TunelineCodeVersion', SearchAttributeType.KEYWORD),
  /** How the run ended: its outcome (`promoted`, `not-promoted`, `unchanged`, ...) or `failed`. */
  verdict: defineSearchAttributeKey('TunelineVerdict', SearchAttributeType.KEYWORD),
  /** `user@host`, or `schedule <id>` for a scheduled run. */
  startedBy: defineSearchAttributeKey('TunelineStartedBy', SearchAttributeType.KEYWORD),
} as const;

/** Every search attribute the project uses, for registering them on a server. */
export const allSearchAttributes = Object.values(SearchAttributes);

/** Every workflow answers it: its stage, its steps, and the stage workflows it started. */
export const progressQuery = defineQuery<WorkflowProgress>('progress');

/** A sweep answers it too: every trial as it stands. */
export const sweepQuery = defineQuery<SweepProgress>('sweep');

/** A run in human review answers it: the items, every vote so far, the satisfaction. */
export const reviewQuery = defineQuery<ReviewState>('reviewStatus');

/** A reviewer's verdict on one item; rejected with its reason when it cannot count. Returns the review as it stands. */
export const reviewUpdate = defineUpdate<ReviewState, [ReviewVote]>('review');

/** Deterministic child ids, so a retried parent finds its children and a person can guess them. */
export const childWorkflowId = {
  data: (runId: string) => `${runId}/data`,
  trial: (runId: string, name = 'trial') => `${runId}/${name}`,
  /** A sweep trial's run to one rung (`rung-1`, …) or to the end of its budget (`final`). */
  sweepTrial: (sweepId: string, trial: number, leg: string) => `${sweepId}/trial-${trial}/${leg}`,
  winner: (sweepId: string) => `${sweepId}/winner`,
};
