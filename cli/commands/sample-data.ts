import type { Command } from 'commander';
import { catalogSize, writeSampleJsonl } from '../../sample-data/generate';

export function registerSampleData(program: Command): void {
  program
    .command('sample-data')
    .description('Write the synthetic electronics support dataset (JSONL) with its planted noise.')
    .option('-o, --output <path>', 'output file', 'sample-data.jsonl')
    .option('-n, --rows <n>', 'question-answer pairs', '10000')
    .option('-s, --seed <n>', 'generator seed; the same seed writes the same file', '42')
    .option('-p, --products <n>', `sell only this many of the ${catalogSize} catalog products`, String(catalogSize))
    .action(async (opts: { output: string; rows: string; seed: string; products: string }) => {
      const noise = await writeSampleJsonl(opts.output, Number(opts.rows), Number(opts.seed), Number(opts.products));
      console.log(`Wrote ${opts.rows} rows to ${opts.output}. Planted noise: ${JSON.stringify(noise)}`);
    });
}
