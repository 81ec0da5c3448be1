import type { Command } from 'commander';
import { formatProblems } from '../../schemas/validate';
import { loadConfigFile } from '../config';
import { plannedNotes } from '../planned';

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description(
      'Check temporal.yaml against the schema and list every problem with its path; note the keys it sets that nothing reads yet.',
    )
    .option('-c, --config <path>', 'pipeline file', 'temporal.yaml')
    .option('--json', 'print the problems (and notes) as JSON')
    .action((opts: { config: string; json?: boolean }) => {
      const loaded = loadConfigFile(opts.config);
      const notes = plannedNotes(loaded.raw);
      if (opts.json)
        console.log(JSON.stringify({ path: loaded.path, valid: loaded.problems.length === 0, problems: loaded.problems, notes }));
      else if (loaded.problems.length === 0) {
        console.log(`${loaded.path} is valid (pipeline "${loaded.config!.name}").`);
        for (const note of notes) console.log(`note: ${note}`);
      } else console.error(formatProblems(loaded.problems, loaded.path));
      if (loaded.problems.length > 0) process.exitCode = 2;
    });
}
