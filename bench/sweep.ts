/**
 * Sweep benchmark: successive halving against the whole grid, on the tiny model (engine/tests/
 * tiny_models.py, real training) and the sample data. The same 8-point grid (LoRA ranks 2 to 16 ×
 * two learning rates, a 32-step budget) runs twice in one dev server: with halving (rungs at 25% and
 * 50% of the budget, reduction 2) and without. Both pick the winner by final validation loss.
 *
 *   npm run bench:sweep                 # about 6 minutes on 2 idle cores
 *   npm run bench:sweep -- --steps 64
 *
 * Prints, side by side with their ratio: trial steps trained, wall time, the winner of each, and its
 * validation loss, and whether both picked the same configuration; writes bench/results/sweep.json.
 * The grid run's winner is the best configuration by definition (every trial trains to the end); a
 * halving winner that differs is a trial the rungs stopped too early, and its loss says how much
 * that costs.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { renderMarkdown } from '../activities/report/document';
import { startSweep } from '../cli/client';
import { loadConfigFile } from '../cli/config';
import type { SweepResult } from '../schemas/manifests';
import { buildTinyModel, startInProcessTemporal, tempDir, writePipeline } from '../test/integration/harness';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '32' } } });
const steps = Number(values.steps);
const work = tempDir('tuneline-bench-sweep-');
const tinyModel = buildTinyModel();

const { client, stop } = await startInProcessTemporal(work);

async function sweep(halving: boolean): Promise<{ result: SweepResult; seconds: number }> {
  // Each run its own store, so neither reuses the other's training.
  const dir = tempDir('tuneline-bench-sweep-run-');
  const path = writePipeline(dir, {
    name: 'bench-sweep',
    data: { sample: { rows: 600, seed: 11 } },
    model: { base: tinyModel },
    training: {
      maxSteps: steps,
      batchSize: 4,
      maxLength: 96,
      checkpointEvery: 4,
      evalEvery: 4,
      maxValidationRows: 16,
      device: 'cpu',
      grounding: { k: 0 },
    },
    evaluation: { baselines: ['base'], forgettingCheck: false, maxTestRows: 4, maxNewTokens: 8, batchSize: 4 },
    sweep: {
      rank: [2, 4, 8, 16],
      alpha: { perRank: 2 },
      learningRate: [1e-3, 4e-3],
      maxParallel: 1,
      halving: { enabled: halving, rungs: [0.25, 0.5], reduction: 2 },
    },
  });
  const started = performance.now();
  const result = await (await startSweep(client, loadConfigFile(path))).result();
  return { result, seconds: (performance.now() - started) / 1000 };
}

try {
  const halved = await sweep(true);
  const grid = await sweep(false);
  const winner = (r: SweepResult) => r.trials.find((t) => t.best);
  const row = (name: string, a: number | string, b: number | string, ratio: string) => [name, a, b, ratio];
  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  const rows = [
    row('trial steps trained', halved.result.trialSteps, grid.result.trialSteps, ratio(halved.result.trialSteps, grid.result.trialSteps)),
    row('wall seconds', halved.seconds.toFixed(0), grid.seconds.toFixed(0), ratio(halved.seconds, grid.seconds)),
    row('winner', winner(halved.result)?.label ?? 'none', winner(grid.result)?.label ?? 'none', ''),
    row(
      'winner validation loss',
      winner(halved.result)?.validationLoss?.toFixed(4) ?? '-',
      winner(grid.result)?.validationLoss?.toFixed(4) ?? '-',
      ratio(winner(halved.result)?.validationLoss ?? NaN, winner(grid.result)?.validationLoss ?? NaN),
    ),
  ];
  const same = winner(halved.result)?.label === winner(grid.result)?.label;
  console.log(
    renderMarkdown([
      { kind: 'paragraph', text: `8 trials, ${steps}-step budget, tiny model on ${join(work)}; both pick by final validation loss.` },
      { kind: 'table', header: ['', 'successive halving', 'whole grid', 'ratio'], numeric: [false, true, true, true], rows },
      { kind: 'paragraph', text: same ? 'Both picked the same configuration.' : 'They picked different configurations.' },
    ]),
  );
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  writeFileSync(
    join(import.meta.dirname, 'results', 'sweep.json'),
    JSON.stringify({ steps, halving: halved, grid, sameWinner: same }, null, 2) + '\n',
  );
} finally {
  await stop();
}
