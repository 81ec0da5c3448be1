import type { Command } from 'commander';
import { writeSampleJsonl } from '../../activities/data/sample/generate';

export function registerSampleData(program: Command): void {
  program
    .command('sample-data')
    .description('Write the synthetic electronics support dataset (JSONL) with its planted noise.')
    .option('-o, --output <path>', 'output file', 'sample-data.jsonl')
    .option('-n, --rows <n>', 'question-answer pairs', '10000')
    .option('-s, --seed <n>', 'generator seed; the same seed writes the same file', '42')
    .action(async (opts: { output: string; rows: string; seed: string }) => {
      const noise = await writeSampleJsonl(opts.output, Number(opts.rows), Number(opts.seed));
      console.log(`Wrote ${opts.rows} rows to ${opts.output}. Planted noise: ${JSON.stringify(noise)}`);
    });
}
