import { describe, expect, it } from 'vitest';
import { parseTrainingEvents, type LoggedTrainingEvent } from '../../activities/train';

type Logged = Omit<LoggedTrainingEvent, 'at'>;
import { modelFlopsUtilization, peakBf16Flops, resumeCheck, stageOfStep } from '../../scripts/gpu-check/figures';

describe('the GPU check figures', () => {
  it("looks up a GPU's peak dense bf16 rate by its CUDA name, the most specific first", () => {
    expect(peakBf16Flops('NVIDIA H200')).toBe(989e12);
    expect(peakBf16Flops('NVIDIA H100 80GB HBM3')).toBe(989e12);
    expect(peakBf16Flops('NVIDIA H100 PCIe')).toBe(756e12);
    expect(peakBf16Flops('NVIDIA A100-SXM4-80GB')).toBe(312e12);
    expect(peakBf16Flops('NVIDIA L4')).toBe(121e12);
    expect(peakBf16Flops('NVIDIA L40S')).toBe(362e12);
    expect(peakBf16Flops('Tesla V100-SXM2-16GB')).toBeNull();
  });

  it('model FLOPs utilisation is 6 N tokens/s over the peak, and null with a reason on CPU or an unknown GPU', () => {
    const gpu = { device: 'cuda' as const, deviceName: 'NVIDIA H200' };
    const mfu = modelFlopsUtilization(gpu, 'cuda', 100_000, 135_000_000);
    expect(mfu.achievedFlopsPerSecond).toBe(6 * 135e6 * 1e5);
    expect(mfu.value).toBeCloseTo((6 * 135e6 * 1e5) / 989e12, 12);
    expect(mfu.reason).toBeNull();
    // Two processes on two GPUs: the group's tokens per second against twice one GPU's peak.
    const pair = modelFlopsUtilization(gpu, 'cuda', 200_000, 135_000_000, 2);
    expect(pair.peakFlopsPerSecond).toBe(2 * 989e12);
    expect(pair.value).toBeCloseTo(mfu.value!, 12);
    const cpu = modelFlopsUtilization({ device: 'cpu', deviceName: 'AMD EPYC' }, 'cpu', 200, 135_000_000);
    expect(cpu).toMatchObject({ value: null, peakFlopsPerSecond: null, reason: expect.stringMatching(/^trained on cpu/) });
    const unknown = modelFlopsUtilization({ device: 'cuda', deviceName: 'Tesla V100' }, 'cuda', 200, 1000);
    expect(unknown.reason).toMatch(/not in the table/);
  });

  it('groups run steps into the stages of the check', () => {
    expect(stageOfStep({ stage: 'data', step: 'dedup' })).toBe('data');
    expect(stageOfStep({ stage: 'trial', step: 'ground-training' })).toBe('grounding');
    expect(stageOfStep({ stage: 'trial', step: 'train' })).toBe('train');
    expect(stageOfStep({ stage: 'trial', step: 'export' })).toBe('export');
    expect(stageOfStep({ stage: 'trial', step: 'answers-base' })).toBe('evaluate');
    expect(stageOfStep({ stage: 'pipeline', step: 'run-report' })).toBe('report');
  });

  const step = (attempt: number, n: number, loss: number): Logged => ({ attempt, event: 'step', step: n, loss });
  const killedRun: Logged[] = [
    { attempt: 1, event: 'start', step: 0, device: 'cpu' },
    step(1, 1, 3.1),
    step(1, 2, 3.0),
    { attempt: 1, event: 'checkpoint', step: 2 },
    step(1, 3, 2.9),
    { attempt: 2, event: 'start', step: 2, device: 'cpu' },
    step(2, 3, 2.9),
    step(2, 4, 2.8),
  ];

  it('passes a resume that starts at the newest checkpoint with the same loss at the next step', () => {
    expect(resumeCheck('lora', killedRun)).toEqual({
      strategy: 'lora',
      killedAfterStep: 3,
      resumedFromStep: 2,
      comparedStep: 3,
      killedAttemptLoss: 2.9,
      resumedAttemptLoss: 2.9,
      difference: 0,
      device: 'cpu',
      passed: true,
    });
  });

  it('reads only the complete lines of an events log that is being appended to', () => {
    const text = '{"attempt":1,"event":"start","step":0}\n{"attempt":1,"event":"step","step":1,"loss":3.1}\n{"attempt":1,"ev';
    expect(parseTrainingEvents(text).map((e) => e.event)).toEqual(['start', 'step']);
    expect(parseTrainingEvents(text.slice(0, text.lastIndexOf('{')))).toHaveLength(2);
  });

  it('fails a resume whose loss differs, or that started over', () => {
    const differs = killedRun.map((e) => (e.attempt === 2 && e.step === 3 && e.event === 'step' ? { ...e, loss: 2.95 } : e));
    expect(resumeCheck('lora', differs)).toMatchObject({ passed: false, difference: expect.closeTo(0.05, 10) });
    const restarted = killedRun.map((e) => (e.attempt === 2 && e.event === 'start' ? { ...e, step: 0 } : e));
    expect(resumeCheck('lora', restarted).passed).toBe(false);
    expect(
      resumeCheck(
        'lora',
        killedRun.filter((e) => e.attempt === 1),
      ).passed,
    ).toBe(false);
  });
});
