import { setMaxListeners } from 'node:events';
import { basename, join } from 'node:path';
import type { Command } from 'commander';
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { NativeConnection, Worker } from '@temporalio/worker';
import { renderTextTable } from '../../activities/report/document';
import { metricTableBlock } from '../../activities/report/metric-table';
import { verdictSentence } from '../../activities/report/run-report';
import type { GenerationProgress, PipelineResult, StepProgress, TrainProgress, WorkflowProgress } from '../../schemas/manifests';
import { closeWorkerConnection, connectWorker, createWorker, installWorkerLogging } from '../../workers/create';
import { reviewQuery } from '../../workflows/definitions';
import { generationProgress, queryProgress, startPipeline, trainingProgress } from '../client';
import { UserError, requireValidConfig } from '../config';
import { workerLogPath } from '../logs';
import { plannedNotes } from '../planned';
import { openSession } from '../session';

interface RunOptions {
  config: string;
  cache: boolean;
  json?: boolean;
  workers: boolean;
  until?: 'data' | 'train';
  onlyIfChanged?: boolean;
}

const marks: Record<StepProgress['status'], string> = { pending: ' ', running: '>', done: '+', reused: '=', failed: 'x' };

function stepLine(s: StepProgress): string {
  const time = s.seconds !== undefined ? `${s.seconds.toFixed(2)}s` : '';
  const note = s.status === 'reused' ? '(reused from cache)' : '';
  return `  ${marks[s.status]} ${s.step.padEnd(8)} ${time.padStart(8)}  ${s.summary ?? ''} ${note}`.trimEnd();
}

const fixed = (v: unknown, digits: number) => (typeof v === 'number' ? v.toFixed(digits) : '-');

/** One live line from the training heartbeat; undefined until the engine reports a step. */
function trainingLine(t: Partial<TrainProgress> | undefined): string | undefined {
  // Nothing to say until the engine has loaded the model and measured something.
  if (typeof t?.step !== 'number' || (t.step === 0 && typeof t.validationLoss !== 'number')) return undefined;
  const validation = typeof t.validationLoss === 'number' ? `  validation loss ${fixed(t.validationLoss, 3)}` : '';
  const attempt = (t.attempt ?? 1) > 1 ? `  (attempt ${t.attempt}, resumed)` : '';
  return `  > train    step ${t.step}/${t.totalSteps ?? '?'}  loss ${fixed(t.loss, 3)}  ${fixed(t.tokensPerSecond, 0)} tokens/s${validation}${attempt}`;
}

/** One live line from the generation heartbeat. */
function generationLine(g: GenerationProgress | undefined): string | undefined {
  if (typeof g?.answered !== 'number') return undefined; // the step's first beat names the step only
  return `  > answers-${g.system}  ${g.answered}/${g.rows} answered  ${g.newTokens} tokens in ${g.seconds}s`;
}

/** Report prose (`**bold**`, `code`) as terminal text. */
const plain = (text: string) => text.replace(/\*\*|`/g, '');

/** What a finished run produced: splits, model, metric table, gate verdict, report and manifest paths. */
export function printSummary(result: PipelineResult): void {
  const reused = result.steps.filter((s) => s.reused).map((s) => s.step);
  // A run folder in a bucket is a list of names there: `tuneline fetch` brings the files here.
  const inBucket = result.runFolder.startsWith('s3://');
  const file = (name: string) => (inBucket ? name : join(result.runFolder, name));
  console.log(`\n${result.outcome === 'data-ready' ? 'Data stage' : 'Pipeline'} done for "${result.pipeline}".`);
  console.log(reused.length ? `Reused from cache: ${reused.join(', ')} (--no-cache re-runs them).` : 'No step was reused from cache.');
  for (const [name, ref] of Object.entries(result.data.splits))
    console.log(`  ${name.padEnd(10)} ${String(ref.rows).padStart(6)} rows    ${file(`${name}.arrow`)}`);
  console.log(`  quarantine ${String(result.data.quarantine.rows).padStart(6)} rows    ${file('quarantine.jsonl')}`);
  console.log(`  conflicts  ${String(result.data.conflicts.rows).padStart(6)} groups  ${file('conflicts.jsonl')}`);
  console.log(`Data report: ${file('data-report.md')} (and .json)`);
  if (result.training) {
    const m = result.training.metrics;
    const resumed = result.training.resumedFromStep ? ` (resumed from step ${result.training.resumedFromStep})` : '';
    const paused = m.pausedAtStep !== null ? `, paused at step ${m.pausedAtStep} of ${m.totalSteps}` : '';
    console.log(`\nTrained ${result.training.steps} steps${paused}${resumed}.`);
    console.log(`  validation loss before ${m.initialValidationLoss.toFixed(4)} -> after ${m.finalValidationLoss.toFixed(4)}`);
    console.log(`  model ${file('model')}`);
    if (result.onnx) console.log(`  ONNX export (greedy tokens match PyTorch) ${file('onnx')}`);
  }
  if (result.evaluation) {
    const { gate, rows, metrics } = result.evaluation;
    console.log(`\nEvaluated on ${rows} test rows, every system on the same rows:`);
    console.log(renderTextTable(metricTableBlock(metrics, { headline: true })));
    console.log(`\n${plain(verdictSentence(gate))}`);
    if (result.outcome === 'promoted') console.log(`Promoted: the production model of ${result.pipeline} now (tuneline models list).`);
    if (result.outcome === 'candidate')
      console.log(`Promotion is manual: tuneline models promote ${basename(result.runFolder)} makes it production.`);
    console.log(`Run report: ${file('report/report.html')} (and report.md)`);
  }
  if (result.outcome === 'promoted')
    console.log('Chat with it: npx tuneline serve (an OpenAI-compatible API on http://127.0.0.1:8000/v1).');
  else if (result.onnx) console.log(`Chat with this model: npx tuneline serve --run ${basename(result.runFolder)}`);
  if (result.outcome === 'unchanged')
    console.log('\nNothing new: the production model was trained on this data and this config, so nothing was trained.');
  console.log(`Run manifest: ${file('run.json')}`);
  if (inBucket) console.log(`Run files in ${result.runFolder}: tuneline fetch ${basename(result.runFolder)} brings them here.`);
}

const INTERRUPTED = Symbol('interrupted');

/**
 * Runs client calls under abort signals that `abortAll` cancels, so that closing the connection
 * after an interrupt cannot make the client retry a wait that is still open. A call adds an abort
 * listener that lives as long as its signal, so each call gets a signal of its own (the result wait
 * keeps one across its long polls, a few per minute).
 */
function abortableCalls(client: Client) {
  const inFlight = new Set<AbortController>();
  return {
    async run<T>(fn: () => Promise<T>): Promise<T> {
      const controller = new AbortController();
      setMaxListeners(0, controller.signal);
      inFlight.add(controller);
      try {
        return await client.withAbortSignal(controller.signal, fn);
      } finally {
        inFlight.delete(controller);
      }
    },
    abortAll(): void {
      for (const controller of inFlight) controller.abort();
    },
  };
}

/**
 * Ends a run whose in-process workers were stopped: terminated with the reason in its history, so no
 * later worker picks it up half-way. Nothing is lost: finished steps are in the step cache and the
 * training step's checkpoints stay in its work folder, so the same config run again goes on from there.
 */
async function stopInterruptedRun(handle: WorkflowHandle, say: (line: string) => void): Promise<void> {
  const training = await trainingProgress(handle);
  await handle.terminate('interrupted: the workers of `tuneline run` were stopped by a signal').catch(() => {});
  const checkpoint = typeof training?.checkpointStep === 'number' ? `, training from its step-${training.checkpointStep} checkpoint` : '';
  say(`\nInterrupted: run ${handle.workflowId} stopped (terminated, the reason is in its history).`);
  say(`Run the same command again to go on: finished steps are reused from cache${checkpoint}.`);
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('Run the pipeline: start Temporal if needed, run the workers in-process, show live progress, print a summary.')
    .option('-c, --config <path>', 'pipeline file', 'temporal.yaml')
    .option('--no-cache', 're-run every step even when its cached output is intact')
    .option('--no-workers', 'do not run workers in this process (use `tuneline worker` processes)')
    .option('--json', 'print one JSON object with the run id, status and artifact manifests')
    .option('--until <stage>', 'stop after this stage: data or train')
    .option('--only-if-changed', "end after the data stage when the data and config are the production model's (as scheduled runs do)")
    .action(async (opts: RunOptions) => {
      const loaded = requireValidConfig(opts.config);
      const say = opts.json ? (line: string) => console.error(line) : (line: string) => console.log(line);
      for (const note of plannedNotes(loaded.raw)) say(`note: ${note}`);
      const session = await openSession({ log: say });
      const workers: Worker[] = [];
      let workerConnection: NativeConnection | undefined;
      try {
        if (opts.workers) {
          const logFile = workerLogPath();
          installWorkerLogging(logFile);
          say(`Worker logs: ${logFile}`);
          const connection = (workerConnection = await connectWorker(session.target));
          workers.push(await createWorker('cpu', connection, session.target.namespace));
          workers.push(await createWorker('gpu', connection, session.target.namespace));
        }
        const running = workers.map((w) => w.run());
        // In-process workers stop before the run ends only when a signal (Ctrl-C) shut them down;
        // nothing would finish the run then, so stop waiting for it. Without workers of ours, the
        // signal just detaches this client.
        const stopped = workers.length
          ? Promise.all(running)
          : new Promise((resolve) => process.once('SIGINT', resolve).once('SIGTERM', resolve));
        if (opts.until && opts.until !== 'data' && opts.until !== 'train')
          throw new UserError(`--until must be data or train, not "${opts.until}"`);
        const handle = await startPipeline(session.client, loaded, {
          noCache: !opts.cache,
          stopAfter: opts.until,
          onlyIfChanged: opts.onlyIfChanged,
          command: 'tuneline run',
        });
        say(
          `Run ${handle.workflowId}${session.uiUrl ? `  ${session.uiUrl}/namespaces/${session.target.namespace}/workflows/${handle.workflowId}` : ''}`,
        );
        const printed = new Map<string, string>();
        const show = (progress: WorkflowProgress | undefined) => {
          for (const s of progress?.steps ?? []) {
            const line = stepLine(s);
            if (printed.get(s.step) !== line && s.status !== 'running') {
              printed.set(s.step, line);
              say(line);
            }
          }
        };
        let lastTrainLine = '';
        let lastGenerationLine = '';
        let toldReview = false;
        const showTraining = async () => {
          const line = trainingLine(await trainingProgress(handle));
          if (line && line !== lastTrainLine) say((lastTrainLine = line));
        };
        const calls = abortableCalls(session.client);
        let polling = false; // one progress poll at a time: a query waits while no worker is free to answer it
        const poll = setInterval(() => {
          if (polling) return;
          polling = true;
          void calls
            .run(() => queryProgress(handle))
            .then(async (p) => {
              show(p);
              if (p?.stage === 'train') await calls.run(showTraining);
              if (p?.stage === 'review' && !toldReview) {
                toldReview = true;
                const state = await calls.run(() => handle.query(reviewQuery)).catch(() => undefined);
                say(
                  `  > review   the gates passed; ${state?.items.length ?? 'the'} sampled answers wait for reviewers until ${state?.deadline ?? 'review.timeout'}. ` +
                    `See them with tuneline review items ${handle.workflowId}, vote with tuneline review vote (this command waits; Ctrl-C ends the run).`,
                );
              }
              if (p?.stage === 'evaluate') {
                const line = generationLine(await calls.run(() => generationProgress(handle)));
                if (line && line !== lastGenerationLine) say((lastGenerationLine = line));
              }
            })
            .catch(() => {})
            .finally(() => (polling = false));
        }, 1000);
        let result: PipelineResult | undefined;
        let failure: string | undefined;
        try {
          const outcome = await Promise.race([calls.run(() => handle.result()), stopped.then((): typeof INTERRUPTED => INTERRUPTED)]);
          if (outcome === INTERRUPTED) {
            clearInterval(poll);
            calls.abortAll();
            if (workers.length) await stopInterruptedRun(handle, say);
            else say(`\nDetached: run ${handle.workflowId} stays open; \`tuneline status ${handle.workflowId}\` shows it.`);
            process.exitCode = 130;
            return;
          }
          result = outcome;
        } catch (err) {
          failure = err instanceof WorkflowFailedError ? (err.cause?.message ?? err.message) : (err as Error).message;
        } finally {
          clearInterval(poll);
        }
        show(await queryProgress(handle));
        for (const w of workers) w.shutdown();
        await Promise.all(running);
        if (opts.json) {
          console.log(
            JSON.stringify({
              workflowId: handle.workflowId,
              runId: handle.firstExecutionRunId,
              status: failure ? 'failed' : 'completed',
              error: failure,
              result,
            }),
          );
        } else if (result) printSummary(result);
        else console.error(`\nRun failed: ${failure}`);
        if (failure) process.exitCode = 1;
      } finally {
        for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
        await closeWorkerConnection(workers, workerConnection);
        await session.close();
      }
    });
}
