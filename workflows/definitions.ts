/**
 * Names shared by workflows, workers and clients: task queues, search attributes, queries, child
 * workflow ids. Dependency-free apart from Temporal's own definitions, so the workflow bundle can import it.
 */
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery } from '@temporalio/workflow';
import type { WorkflowProgress } from '../schemas/manifests';

export const TaskQueues = { cpu: 'tuneline-cpu', gpu: 'tuneline-gpu' } as const;
export type QueueName = keyof typeof TaskQueues;

export const SearchAttributes = {
  stage: defineSearchAttributeKey('TunelineStage', SearchAttributeType.KEYWORD),
  pipeline: defineSearchAttributeKey('TunelinePipeline', SearchAttributeType.KEYWORD),
  configHash: defineSearchAttributeKey('TunelineConfigHash', SearchAttributeType.KEYWORD),
} as const;

/** Every search attribute the project uses, for registering them on a server. */
export const allSearchAttributes = Object.values(SearchAttributes);

/** Every workflow answers it: its stage, its steps, and the stage workflows it started. */
export const progressQuery = defineQuery<WorkflowProgress>('progress');

/** Deterministic child ids, so a retried parent finds its children and a person can guess them. */
export const childWorkflowId = {
  data: (runId: string) => `${runId}/data`,
  trial: (runId: string, name = 'trial') => `${runId}/${name}`,
};
