/**
 * `tuneline`: the command users type. Each subcommand is one user task; its --help is its documentation.
 */
import { Command, CommanderError } from 'commander';
import { registerAudit } from './commands/audit';
import { registerFeedback } from './commands/feedback';
import { registerFetch } from './commands/fetch';
import { registerKeys } from './commands/keys';
import { registerModels } from './commands/models';
import { registerReview } from './commands/review';
import { registerRun } from './commands/run';
import { registerRuns } from './commands/runs';
import { registerSampleData } from './commands/sample-data';
import { registerSchedule } from './commands/schedule';
import { registerServe } from './commands/serve';
import { registerStatus } from './commands/status';
import { registerSweep } from './commands/sweep';
import { registerTemporal } from './commands/temporal';
import { registerValidate } from './commands/validate';
import { registerWorker } from './commands/worker';
import { keyErrorOf } from '../lib/encryption';
import { UserError } from './config';

const program = new Command('tuneline')
  .description('Turn question-answer data into an evaluated, served chatbot: a durable fine-tuning pipeline on Temporal.')
  .version('0.1.0')
  .showHelpAfterError();
registerValidate(program);
registerRun(program);
registerStatus(program);
registerFetch(program);
registerRuns(program);
registerSweep(program);
registerWorker(program);
registerTemporal(program);
registerSampleData(program);
registerAudit(program);
registerSchedule(program);
registerModels(program);
registerKeys(program);
registerServe(program);
registerFeedback(program);
registerReview(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const keyError = keyErrorOf(err);
  if (err instanceof UserError || keyError) {
    console.error((keyError ?? (err as Error)).message);
    process.exitCode = 2;
  } else if (!(err instanceof CommanderError)) {
    console.error(err);
    process.exitCode = 1;
  }
}
