import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { requireValidConfig } from '../../cli/config';
import { desiredSchedules, scheduleOptions } from '../../cli/schedules';
import { checkConfig } from '../../schemas/validate';
import { tempDir } from '../integration/harness';

const file = (dir: string, name: string, config: object) => {
  writeFileSync(join(dir, name), stringify(config));
  return join(dir, name);
};
const base = { name: 'shop', data: { sample: { rows: 10 } } };

describe('declared schedules', () => {
  it('become Temporal schedules: times, time zone, policies, state, and a run of the declared pipeline file', () => {
    const dir = tempDir();
    const path = file(dir, 'temporal.yaml', {
      ...base,
      schedules: [
        {
          id: 'nightly',
          cron: '0 3 * * *',
          timezone: 'Europe/Berlin',
          overlap: 'buffer-one',
          catchupWindow: '2h',
          jitter: '5m',
          paused: true,
        },
        { id: 'weekly', every: '7d', pipeline: 'other.yaml', onlyIfChanged: false },
      ],
    });
    file(dir, 'other.yaml', { ...base, name: 'shop-big' });
    const [nightly, weekly] = desiredSchedules(requireValidConfig(path)).map(scheduleOptions);
    expect(nightly).toMatchObject({
      scheduleId: 'shop.nightly',
      spec: { cronExpressions: ['0 3 * * *'], timezone: 'Europe/Berlin', jitter: '5m' },
      policies: { overlap: 'BUFFER_ONE', catchupWindow: '2h' },
      state: { paused: true, note: 'declared paused' },
      memo: { tunelineOwner: 'shop' },
      action: { type: 'startWorkflow', workflowType: 'finetunePipeline', taskQueue: 'tuneline-cpu', workflowId: 'shop-scheduled-nightly' },
    });
    expect(nightly!.action.args![0]).toMatchObject({ configFile: path, onlyIfChanged: true, schedule: 'shop.nightly' });
    expect(weekly).toMatchObject({
      spec: { intervals: [{ every: '7d' }], timezone: 'UTC' },
      policies: { overlap: 'SKIP', catchupWindow: '1h' },
    });
    expect(weekly!.action.args![0]).toMatchObject({
      configFile: join(dir, 'other.yaml'),
      onlyIfChanged: false,
      config: { name: 'shop-big' },
    });
  });

  it('change their fingerprint with their declaration or the pipeline file they run, not with their paused state', () => {
    const dir = tempDir();
    file(dir, 'train.yaml', base);
    const declared = { id: 'nightly', cron: '0 3 * * *', pipeline: 'train.yaml' };
    const print = (config: object) => desiredSchedules(requireValidConfig(file(dir, 'ops.yaml', config)))[0]!.mark.fingerprint;
    const first = print({ ...base, schedules: [declared] });
    expect(print({ ...base, schedules: [declared] })).toBe(first);
    expect(print({ ...base, schedules: [{ ...declared, paused: true }] })).toBe(first);
    expect(print({ ...base, schedules: [{ ...declared, cron: '0 4 * * *' }] })).not.toBe(first);
    file(dir, 'train.yaml', { ...base, training: { maxSteps: 10 } });
    expect(print({ ...base, schedules: [declared] })).not.toBe(first);
  });

  it('are checked with every problem named at once', () => {
    const check = checkConfig({
      ...base,
      schedules: [
        { id: 'a', cron: '0 3 * *', every: '1d' },
        { id: 'a', cron: '0 3 * * *', timezone: 'Mars/Olympus', overlap: 'sometimes' },
        { id: 'b bad' },
      ],
    });
    expect(check.ok).toBe(false);
    const problems = check.ok ? [] : check.problems.map((p) => `${p.path}: ${p.message}`);
    expect(problems.join('\n')).toMatch(/schedules\[0\]\.cron: five fields/);
    expect(problems.join('\n')).toMatch(/schedules\[1\]\.timezone: an IANA time zone/);
    expect(problems.join('\n')).toMatch(/schedules\[1\]\.overlap/);
    expect(problems.join('\n')).toMatch(/schedules\[2\]\.id: letters, digits/);
    expect(problems.join('\n')).toMatch(/set exactly one of `cron` or `every`/);
  });
});
