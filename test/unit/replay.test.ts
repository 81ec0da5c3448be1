/**
 * Replays recorded workflow histories against the current workflow code, so a change that would
 * break running or past runs (non-determinism) fails here, not in production. When a change is
 * meant to alter histories, guard it with `patched()` and record new fixtures
 * (`npx tsx scripts/record-histories.ts`, which writes every workflow of each recorded run).
 * `histories/past/` keeps a whole run recorded by earlier code (the recorder leaves it alone): runs
 * started before an upgrade must still replay, their inputs lacking keys added since.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { describe, expect, it } from 'vitest';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const historiesDir = join(fixtures, 'histories');
const workflowsPath = join(import.meta.dirname, '..', '..', 'workflows', 'index.ts');
const pastDir = join(historiesDir, 'past');
const idsIn = (dir: string) => JSON.parse(readFileSync(join(dir, 'workflow-ids.json'), 'utf8')) as Record<string, string>;
const historiesIn = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'workflow-ids.json');
const workflowIds = idsIn(historiesDir);
const files = historiesIn(historiesDir);
const pastIds = idsIn(pastDir);
const pastFiles = historiesIn(pastDir);

const read = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as { events: Array<Record<string, any>> };
const load = (file: string) => read(join(historiesDir, file));
const workflowType = (file: string): string => load(file).events[0]!.workflowExecutionStartedEventAttributes.workflowType.name;

describe('workflow history replay', () => {
  it('has a recorded history of every workflow type, from a run of each kind', () => {
    expect(Object.keys(workflowIds).sort()).toEqual([...files].sort());
    expect(files).toEqual(
      expect.arrayContaining(['data-stage.pipeline.json', 'bad-config.pipeline.json', 'full-run.pipeline.json', 'full-run.trial.json']),
    );
    expect(new Set(files.map(workflowType))).toEqual(new Set(['finetunePipeline', 'dataStage', 'trial', 'sweep']));
    // The whole run went through training, export, evaluation and the report.
    const activities = load('full-run.trial.json').events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
    expect(activities).toEqual(expect.arrayContaining(['trainModel', 'exportModel', 'generateAnswers', 'scoreAnswers']));
    // It was promoted; the same run again, as a schedule starts it, checked and found nothing new to train.
    const scheduled = (file: string) => load(file).events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
    expect(scheduled('full-run.pipeline.json')).toEqual(expect.arrayContaining(['drawReviewSample', 'promoteModel']));
    // Its review's votes are Updates in the history.
    expect(load('full-run.pipeline.json').events.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes)).toHaveLength(3);
    expect(scheduled('unchanged.pipeline.json')).toContain('checkUnchanged');
    expect(
      load('unchanged.pipeline.json').events.some(
        (e) => e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowType?.name === 'trial',
      ),
    ).toBe(false);
  });

  it.each(files)('replays %s without a determinism error', { timeout: 60_000 }, async (file) => {
    await expect(Worker.runReplayHistory({ workflowsPath }, load(file), workflowIds[file])).resolves.toBeUndefined();
  });

  it.each(pastFiles)('replays past/%s, recorded by earlier code', { timeout: 60_000 }, async (file) => {
    expect(Object.keys(pastIds)).toContain(file);
    await expect(Worker.runReplayHistory({ workflowsPath }, read(join(pastDir, file)), pastIds[file])).resolves.toBeUndefined();
  });

  it('fails on workflow code that changed what a recorded run did', { timeout: 60_000 }, async () => {
    const changed = join(fixtures, 'workflows-changed', 'index.ts');
    const replay = Worker.runReplayHistory({ workflowsPath: changed }, load('data-stage.data.json'), workflowIds['data-stage.data.json']);
    await expect(replay).rejects.toBeInstanceOf(DeterminismViolationError);
  });
});
