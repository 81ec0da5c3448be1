/**
 * Scoring (cpu task queue): every system's answers in one engine call (sacrebleu, rouge-score,
 * factual accuracy), which refuses systems answered on different rows.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { ScoreReport, SYSTEMS, type SystemName } from '../../schemas/engine';
import type { ArtifactRef, MetricTable, StepContext, StepResult } from '../../schemas/manifests';
import type { ScoreStats } from '../../schemas/steps';
import { parseJsonFile } from '../artifacts';
import { codeVersion } from '../code-version';
import { storeFor } from '../context';
import { engineMetrics } from '../engine-process';
import { z } from 'zod';
import { runCachedStep } from '../steps';

/** The headline of a score: ROUGE-L and factual accuracy of every system. */
function summarize({ metrics }: ScoreStats): string {
  const systems = SYSTEMS.filter((s) => metrics[s]);
  const line = (metric: string) =>
    systems.map((s) => `${s} ${typeof metrics[s]?.[metric] === 'number' ? metrics[s][metric].toFixed(3) : '-'}`).join(', ');
  return `rougeL: ${line('rougeL')}; factualAccuracy: ${line('factualAccuracy')}`;
}

/**
 * `lengthMatchedTo`: the served system; every system is also scored with its answers cut to that
 * system's answer lengths, so a win by answering shorter shows as a loss at equal length.
 */
export async function scoreAnswers(
  input: StepContext & { answers: ArtifactRef[]; lengthMatchedTo?: SystemName },
): Promise<StepResult<ScoreStats, 'scores'>> {
  const store = storeFor(input);
  return runCachedStep(
    store,
    {
      step: 'score',
      config: { lengthMatchedTo: input.lengthMatchedTo ?? null },
      inputs: input.answers,
      code: codeVersion(import.meta.url, 'score'),
      noCache: input.noCache,
      summarize,
    },
    async () => {
      const combined = await store.tempPath();
      const output = `${await store.tempPath()}.json`;
      await writeFile(combined, (await Promise.all(input.answers.map(async (ref) => readFile(await store.fetch(ref), 'utf8')))).join(''));
      // The done event's flat `<system>.<metric>` numbers repeat the report; the report file is the contract.
      const matched = input.lengthMatchedTo ? ['--length-matched-to', input.lengthMatchedTo] : [];
      await engineMetrics(
        ['score', '--input', combined, '--output', output, ...matched],
        'score',
        z.record(z.string(), z.number().nullable()),
      );
      await rm(combined, { force: true });
      const report = await parseJsonFile(output, ScoreReport);
      const scores = await store.putFile(output, '.json', null);
      const metrics: MetricTable = {};
      let rows = 0;
      for (const system of SYSTEMS) {
        const scored = report.systems[system];
        if (!scored) continue;
        metrics[system] = { ...scored.metrics };
        rows = scored.rows;
      }
      return { outputs: { scores }, stats: { rows, metrics } };
    },
  );
}
