/**
 * Which activity runs on which task queue is stated once, in the registries; the workers register
 * them and the workflow proxies are typed from them. The `@ts-expect-error` lines are checked by the
 * type check (`tsc --noEmit`, the first step of `npm test`): calling an activity on a queue that
 * does not serve it must not compile.
 */
import { describe, expect, expectTypeOf, it } from 'vitest';
import { cpuActivities } from '../../activities/cpu';
import { gpuActivities } from '../../activities/gpu';
import type { PipelineConfig } from '../../schemas/config';
import { cpuActivitiesFor, gpuActivitiesFor, type QueueActivities } from '../../workflows/activities';

/** Never called (proxies exist only inside a workflow); compiled, so the type errors below are real. */
export function proxiesAreTypedByQueue(config: PipelineConfig): void {
  const cpu = cpuActivitiesFor();
  const gpu = gpuActivitiesFor(config);
  // @ts-expect-error trainModel is served by the gpu queue only: on the cpu queue it would wait forever.
  void cpu.trainModel;
  // @ts-expect-error generation runs the model, so it is a gpu activity.
  void cpu.generateAnswers;
  // @ts-expect-error the data steps are served by the cpu queue only.
  void gpu.ingestData;
  // Each queue's own activities compile.
  void cpu.ingestData;
  void gpu.trainModel;
}

describe('task queue registries', () => {
  it('give each activity exactly one queue', () => {
    const cpu = Object.keys(cpuActivities);
    const gpu = Object.keys(gpuActivities);
    expect(cpu.filter((name) => gpu.includes(name))).toEqual([]);
    expect(gpu.sort()).toEqual(['checkForgetting', 'exportBaseModel', 'exportEmbedder', 'exportModel', 'generateAnswers', 'trainModel']);
    for (const activity of [...Object.values(cpuActivities), ...Object.values(gpuActivities)]) expect(typeof activity).toBe('function');
  });

  it('type the workflow proxies from the same objects the workers register', () => {
    expectTypeOf<QueueActivities['cpu']>().toEqualTypeOf<typeof cpuActivities>();
    expectTypeOf<QueueActivities['gpu']>().toEqualTypeOf<typeof gpuActivities>();
    expectTypeOf<QueueActivities['cpu']>().not.toHaveProperty('trainModel');
    expectTypeOf<QueueActivities['gpu']>().not.toHaveProperty('prepareSource');
  });
});
