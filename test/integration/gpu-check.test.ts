import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GpuCheckReport } from '../../schemas/gpu-check';
import { RunManifest } from '../../schemas/manifests';
import { buildTinyModel, projectRoot, tempDir } from './harness';

describe('scripts/gpu-check.sh in its CPU mode', () => {
  it('sets up, trains both strategies, resumes a killed training, evaluates, gates and writes gpu-check.json', { timeout: 450_000 }, () => {
    const dir = tempDir('tuneline-gpu-check-');
    const out = join(dir, 'gpu-check.json');
    const tinyModel = buildTinyModel();
    // The shell script as a user runs it, less the setup `npm test` has just run: no GPU here, so
    // the CPU mode with tiny settings. spawnSync blocks the test's own timeout, hence its own.
    const args = ['scripts/gpu-check.sh', '--no-setup', '--out', out, '--model', tinyModel, '--work', join(dir, 'work')];
    const check = spawnSync('bash', args, { cwd: projectRoot, encoding: 'utf8', timeout: 400_000 });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain('gpu-check: no GPU (nvidia-smi lists none)');

    const report = GpuCheckReport.parse(JSON.parse(readFileSync(out, 'utf8')));
    expect(report).toMatchObject({ mode: 'cpu', status: 'passed', failures: [], baseModel: tinyModel });
    expect(report.machine).toMatchObject({ device: 'cpu', gpuCount: 0, cuda: null, bf16: false });
    expect(report.machine!.torch).toMatch(/^2\./);
    expect(Object.keys(report.stages)).toEqual(expect.arrayContaining(['setup', 'machine', 'server', 'lora', 'full']));
    expect(report.notes).toEqual([expect.stringMatching(/^No GPU used/)]);

    for (const strategy of ['lora', 'full'] as const) {
      const s = report.strategies[strategy]!;
      expect(s.strategy).toBe(strategy);
      // The tiny run's gate (rougeL >= 0) passes; promotion is manual, so the model is a candidate.
      expect(s.outcome).toBe('candidate');
      expect(s.gate).toMatchObject({ verdict: 'candidate', system: 'tuned' });
      expect(Object.keys(s.metrics).sort()).toEqual(['base', 'tuned']);
      expect(s.metrics.tuned!.rougeL).toEqual(expect.any(Number));
      expect(s.training).toMatchObject({ device: 'cpu', steps: 24 });
      expect(s.training.tokensPerSecond).toBeGreaterThan(0);
      expect(s.training.peakMemoryBytes).toBeGreaterThan(0);
      expect(s.training.totalParameters).toBeGreaterThanOrEqual(s.training.trainableParameters);
      expect(s.mfu).toMatchObject({ value: null, reason: expect.stringMatching(/^trained on cpu/) });
      expect(Object.keys(s.stages)).toEqual(expect.arrayContaining(['data', 'train', 'export', 'evaluate', 'report']));
      // Every figure comes from the run's manifest, which is there to read.
      const manifest = RunManifest.parse(JSON.parse(readFileSync(s.runManifest, 'utf8')));
      expect(manifest.runId).toBe(s.runId);
      expect(manifest.metrics).toEqual(s.metrics);
    }
    const { lora, full } = report.strategies;
    expect(lora!.training.trainableParameters).toBeLessThan(full!.training.trainableParameters);
    expect(full!.training.totalParameters).toBe(full!.training.trainableParameters);
    // The second run reuses the data stage from the first (its data report names the pipeline, so it is written again).
    const dataSteps = full!.steps.filter((s) => s.stage === 'data' && s.step !== 'report');
    expect(dataSteps.map((s) => s.step)).toEqual(expect.arrayContaining(['source', 'ingest', 'clean', 'dedup', 'split']));
    expect(dataSteps.every((s) => s.reused)).toBe(true);
    expect(full!.steps.find((s) => s.step === 'export-base')?.reused).toBe(true);

    // The LoRA run's worker was killed after its first checkpoint; the retry resumed there, to the bit.
    expect(lora!.training.resumedFromStep).toBe(report.resume!.resumedFromStep);
    expect(lora!.steps.find((s) => s.step === 'train')!.attempt).toBe(2);
    expect(report.resume).toMatchObject({ strategy: 'lora', device: 'cpu', passed: true, difference: 0 });
    expect(report.resume!.resumedFromStep).toBeGreaterThan(0);
    expect(report.resume!.comparedStep).toBe(report.resume!.resumedFromStep + 1);
    expect(report.resume!.killedAttemptLoss).toBe(report.resume!.resumedAttemptLoss);
    expect(existsSync(join(dir, 'work', 'logs', 'worker-gpu-3.log'))).toBe(true);
  });
});
