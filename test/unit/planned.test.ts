import { describe, expect, it } from 'vitest';
import { plannedKeys, plannedNotes } from '../../cli/planned';
import { PipelineConfig } from '../../schemas/config';

const note = (key: string) => `${key} is planned; nothing reads it yet, so it has no effect`;

describe('planned keys', () => {
  it('are the keys whose schema description says nothing reads them yet', () => {
    expect(plannedKeys()).toEqual(['review.sampleSize', 'review.satisfactionTarget', 'review.timeout']);
  });

  it('get no note when the file leaves them out, even though defaults fill them in', () => {
    const raw = { name: 'quiet', data: { sample: { rows: 10 } }, review: { enabled: false } };
    expect(PipelineConfig.parse(raw).schedules).toBeDefined();
    expect(plannedNotes(raw)).toEqual([]);
  });

  it('get one note each when the file sets them, in schema order', () => {
    const raw = {
      name: 'busy',
      schedules: [{ id: 'weekly', every: '7d' }],
      sweep: { rank: [4, 8] },
      review: { timeout: '24h', sampleSize: 10 },
    };
    expect(plannedNotes(raw)).toEqual([note('review.sampleSize'), note('review.timeout')]);
  });

  it('count a key as set even when its value is empty', () => {
    expect(plannedNotes({ schedules: [], review: { timeout: '1h' } })).toEqual([note('review.timeout')]);
  });

  it('say nothing about a file that did not parse, or parsed to something else', () => {
    expect(plannedNotes(undefined)).toEqual([]);
    expect(plannedNotes('sweep')).toEqual([]);
    expect(plannedNotes({ review: 'yes' })).toEqual([]);
    expect(plannedNotes([{ sweep: {} }])).toEqual([]);
  });
});
