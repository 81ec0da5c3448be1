import type { Command } from 'commander';
import { formatProblems } from '../../schemas/validate';
import { loadConfigFile } from '../config';

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('Check temporal.yaml against the schema and list every problem with its path.')
    .option('-c, --config <path>', 'pipeline file', 'temporal.yaml')
    .option('--json', 'print the problems as JSON')
    .action((opts: { config: string; json?: boolean }) => {
      const loaded = loadConfigFile(opts.config);
      if (opts.json) console.log(JSON.stringify({ path: loaded.path, valid: loaded.problems.length === 0, problems: loaded.problems }));
      else if (loaded.problems.length === 0) console.log(`${loaded.path} is valid (pipeline "${loaded.config!.name}").`);
      else console.error(formatProblems(loaded.problems, loaded.path));
      if (loaded.problems.length > 0) process.exitCode = 2;
    });
}
