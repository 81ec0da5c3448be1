/**
 * The audit library, for scripts and `tuneline audit`: a workflow's recorded histories (every run of
 * it, continued-as-new included, and of every child it started), replayed against the current
 * workflow code or written out in the replayable JSON format; and every artifact a run manifest
 * names, hashed again and compared with what the manifest recorded.
 */
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import type { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { artifactPath, sha256File, sha256Tree } from '../activities/artifacts';
import type { ArtifactRef, RunManifest } from '../schemas/manifests';
import { dataConverterFromEnv } from '../lib/encryption';
import { workflowsPath } from '../workers/create';

type History = temporal.api.history.v1.IHistory;

export interface RecordedWorkflow {
  workflowId: string;
  runId: string;
  history: History;
}

/** Every run of the workflow (oldest first) and, depth first, of every child workflow its histories started. */
export async function recordedWorkflows(client: Client, workflowId: string): Promise<RecordedWorkflow[]> {
  const runs: string[] = [];
  for await (const execution of client.workflow.list({ query: `WorkflowId = "${workflowId.replace(/"/g, '\\"')}"` }))
    runs.push(execution.runId);
  if (runs.length === 0) runs.push(''); // not listed yet (visibility lags): the latest run by id
  const out: RecordedWorkflow[] = [];
  for (const runId of runs.reverse()) {
    const handle = client.workflow.getHandle(workflowId, runId || undefined);
    const history = await handle.fetchHistory();
    const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
    out.push({ workflowId, runId: runId || (started?.originalExecutionRunId ?? ''), history });
    const children = (history.events ?? []).flatMap((e) => e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId ?? []);
    for (const child of new Set(children)) out.push(...(await recordedWorkflows(client, child)));
  }
  return out;
}

export interface ReplayOutcome {
  workflowId: string;
  runId: string;
  /** Null when the history replayed cleanly; else what diverged (a determinism error names the event). */
  error: string | null;
  nondeterministic: boolean;
}

/** Replays each history against the workflow code of this checkout (or of the bundle entry given). */
export async function replayWorkflows(recorded: RecordedWorkflow[], workflows = workflowsPath): Promise<ReplayOutcome[]> {
  const outcomes: ReplayOutcome[] = [];
  const histories = recorded.map(({ workflowId, history }) => ({ workflowId, history }));
  let n = 0;
  for await (const result of Worker.runReplayHistories({ workflowsPath: workflows, dataConverter: dataConverterFromEnv() }, histories)) {
    const error = result.error ? result.error.message : null;
    outcomes.push({
      workflowId: result.workflowId,
      runId: recorded[n++]?.runId ?? result.runId,
      error,
      nondeterministic: result.error?.name === 'DeterminismViolationError',
    });
  }
  return outcomes;
}

/** A history as the JSON `Worker.runReplayHistory` and `temporal workflow show --output json` read. */
export const historyJson = (history: History): string => historyToJSON(history);

export interface ArtifactCheck {
  /** Where the manifest names it: `artifacts.train.arrow`, `steps.train.outputs.model`, `data.source`. */
  names: string[];
  ref: ArtifactRef;
  status: 'intact' | 'changed' | 'missing';
  /** The hash found now, when it differs. */
  found?: string;
}

/** Every artifact a run manifest names, once each, with every place it is named. */
export function manifestArtifacts(
  manifest: Pick<RunManifest, 'data' | 'steps' | 'artifacts'>,
): Array<{ names: string[]; ref: ArtifactRef }> {
  const byUri = new Map<string, { names: string[]; ref: ArtifactRef }>();
  const add = (name: string, ref: ArtifactRef) => {
    const known = byUri.get(`${ref.uri}\0${ref.sha256}`);
    if (known) known.names.push(name);
    else byUri.set(`${ref.uri}\0${ref.sha256}`, { names: [name], ref });
  };
  if (manifest.data) add('data.source', manifest.data.source);
  for (const step of manifest.steps) {
    step.inputs.forEach((ref, n) => add(`steps.${step.step}.inputs[${n}]`, ref));
    for (const [name, ref] of Object.entries(step.outputs)) add(`steps.${step.step}.outputs.${name}`, ref);
  }
  for (const [name, ref] of Object.entries(manifest.artifacts)) add(`artifacts.${name}`, ref);
  return [...byUri.values()];
}

/** Hashes each artifact again (a folder as the store hashes it) and says whether it is intact, changed or gone. */
export async function verifyArtifacts(artifacts: Array<{ names: string[]; ref: ArtifactRef }>): Promise<ArtifactCheck[]> {
  const checks: ArtifactCheck[] = [];
  for (const { names, ref } of artifacts) {
    const path = artifactPath(ref);
    if (!existsSync(path)) {
      checks.push({ names, ref, status: 'missing' });
      continue;
    }
    const found = (await stat(path)).isDirectory() ? (await sha256Tree(path)).sha256 : await sha256File(path);
    checks.push(found === ref.sha256 ? { names, ref, status: 'intact' } : { names, ref, status: 'changed', found });
  }
  return checks;
}
