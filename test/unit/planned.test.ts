import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { plannedKeys, plannedNotes } from '../../cli/planned';
import { PLANNED } from '../../schemas/config';

const note = (key: string) => `${key} is planned; nothing reads it yet, so it has no effect`;
/** A pipeline-like schema with planned keys, one a whole section. */
const schema = z.strictObject({
  name: z.string(),
  review: z
    .strictObject({
      enabled: z.boolean().default(true),
      sampleSize: z.number().default(50).describe(`Answers to rate. ${PLANNED}`),
      timeout: z.string().default('72h').describe(`How long to wait. ${PLANNED}`),
    })
    .default({ enabled: true, sampleSize: 50, timeout: '72h' }),
  schedules: z.array(z.string()).default([]).describe(`Schedules. ${PLANNED}`),
});

describe('planned keys', () => {
  it('are the keys whose schema description says nothing reads them yet; the pipeline file has none now', () => {
    expect(plannedKeys(schema)).toEqual(['review.sampleSize', 'review.timeout', 'schedules']);
    expect(plannedKeys()).toEqual([]);
  });

  it('get no note when the file leaves them out, even though defaults fill them in', () => {
    const raw = { name: 'quiet', review: { enabled: false } };
    expect(schema.parse(raw).schedules).toEqual([]);
    expect(plannedNotes(raw, schema)).toEqual([]);
  });

  it('get one note each when the file sets them, in schema order', () => {
    const raw = { name: 'busy', schedules: ['weekly'], review: { timeout: '24h', sampleSize: 10 } };
    expect(plannedNotes(raw, schema)).toEqual([note('review.sampleSize'), note('review.timeout'), note('schedules')]);
    expect(plannedNotes(raw)).toEqual([]);
  });

  it('count a key as set even when its value is empty', () => {
    expect(plannedNotes({ schedules: [], review: { timeout: '1h' } }, schema)).toEqual([note('review.timeout'), note('schedules')]);
  });

  it('say nothing about a file that did not parse, or parsed to something else', () => {
    expect(plannedNotes(undefined, schema)).toEqual([]);
    expect(plannedNotes('schedules', schema)).toEqual([]);
    expect(plannedNotes({ review: 'yes' }, schema)).toEqual([]);
    expect(plannedNotes([{ schedules: [] }], schema)).toEqual([]);
  });
});
