/**
 * `tuneline feedback export`: rated answers from the chat server's SQLite file as dataset rows.
 * Corrected answers are targets, answers rated up are kept as they were; answers rated down without
 * a correction are left out unless `--include-rejected`, and then flagged `rejected` with no target.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { FeedbackStore, type FeedbackRow } from '../../serve/feedback';
import { csvField } from '../table';
import { UserError, requireValidConfig } from '../config';

const COLUMNS: Array<keyof FeedbackRow> = [
  'id',
  'question',
  'answer',
  'rating',
  'rejected',
  'modelAnswer',
  'comment',
  'model',
  'conversation',
  'ratedAt',
];

export function registerFeedback(program: Command): void {
  const feedback = program.command('feedback').description('Ratings of the answers `tuneline serve` gave.');
  feedback
    .command('export')
    .description('Write rated answers as dataset rows (question, answer, ...): CSV or JSON lines, by the extension of --output.')
    .requiredOption('-o, --output <file>', 'a .csv or .jsonl file')
    .option('-c, --config <file>', 'pipeline file whose storage.feedback to read', 'temporal.yaml')
    .option('--db <file>', 'the SQLite file instead')
    .option('--since <date>', 'only ratings given since this date')
    .option('--include-rejected', 'also the answers rated down without a correction, flagged rejected, with no target')
    .action((opts: { output: string; config: string; db?: string; since?: string; includeRejected?: boolean }) => {
      const problems: string[] = [];
      if (!/\.(csv|jsonl)$/.test(opts.output)) problems.push(`--output ${opts.output}: end it in .csv or .jsonl`);
      if (opts.since !== undefined && Number.isNaN(Date.parse(opts.since)))
        problems.push(`--since ${opts.since}: a date such as 2026-12-01`);
      if (problems.length > 0) throw new UserError(problems.join('\n'));
      const file =
        opts.db ??
        (() => {
          const loaded = requireValidConfig(opts.config);
          return resolve(loaded.configDir, loaded.config.storage.feedback);
        })();
      if (!existsSync(file)) throw new UserError(`${file}: no feedback yet (tuneline serve writes it as answers are given and rated)`);
      const store = new FeedbackStore(file);
      const all = store.exportRows(opts.since ? new Date(opts.since).toISOString() : undefined);
      store.close();
      const rows = opts.includeRejected ? all : all.filter((r) => !r.rejected);
      writeFileSync(
        opts.output,
        opts.output.endsWith('.jsonl')
          ? rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '')
          : [COLUMNS.join(','), ...rows.map((r) => COLUMNS.map((c) => csvField(String(r[c]))).join(','))].join('\n') + '\n',
      );
      const rejected = all.filter((r) => r.rejected).length;
      console.log(
        `${opts.output}: ${rows.length} rows (${all.filter((r) => r.rating === 'up').length} rated up, ${all.filter((r) => r.rating === 'down' && !r.rejected).length} corrected` +
          `${rejected ? `, ${rejected} rejected ${opts.includeRejected ? 'flagged' : 'left out (--include-rejected keeps them, flagged)'}` : ''}).`,
      );
    });
}
