/** What the generation and serving benchmarks share: the default model's export and the questions they ask. */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { generateLabelledSampleRecords } from '../sample-data/generate';

const root = join(import.meta.dirname, '..');
const python = join(root, '.venv', 'bin', 'python');
export const DEFAULT_EXPORT = join(root, '.tuneline', 'bench', 'base-onnx');
const SAMPLE_ROWS = 200; // enough clean rows to pick the questions from
export const SAMPLE_SEED = 7;

/** The default model's export, made once and reused. */
export function ensureBaseExport(exportDir: string): void {
  if (existsSync(join(exportDir, 'export.json'))) return;
  const run = (args: string[]) => execFileSync(python, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const modelDir = run(['-c', 'from engine.models import ensure_default_model; print(ensure_default_model())']).trim();
  console.error(`exporting the default model ${modelDir} to ${exportDir} (once, about a minute)`);
  run(['-m', 'engine', 'export', '--model', modelDir, '--output', exportDir]);
}

/** The first `count` clean questions of the seeded sample data: no planted HTML, odd Unicode or pasted manuals. */
export function sampleQuestions(count: number): string[] {
  const { records, labels } = generateLabelledSampleRecords(SAMPLE_ROWS, SAMPLE_SEED);
  const clean = records.filter((_, n) => labels[n]!.kind === 'clean').map((record) => record.question as string);
  if (clean.length < count) throw new Error(`only ${clean.length} clean questions in ${SAMPLE_ROWS} sample rows; raise SAMPLE_ROWS`);
  return clean.slice(0, count);
}
