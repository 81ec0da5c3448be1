import { cp, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { openStore } from '../../activities/context';
import { UserError, requireValidConfig } from '../config';

/**
 * `tuneline fetch RUN_ID`: a run's (or sweep's) named files, from the pipeline's store (a bucket or
 * the local run folder) into a folder here, each verified against its hash on the way.
 */
export function registerFetch(program: Command): void {
  program
    .command('fetch')
    .description(
      "Bring a run's files (run.json, the report, the model and its ONNX export, the splits) from the artifact store into a folder.",
    )
    .argument('<run-id>', 'the workflow id printed by `tuneline run` (or a sweep id)')
    .option('-c, --config <file>', 'pipeline file whose storage.artifacts holds the run', 'temporal.yaml')
    .option('-o, --output <dir>', 'folder to write the files into (default: ./<run-id>)')
    .option('--only <names>', 'comma-separated file names to fetch, e.g. run.json,report,onnx (default: all)')
    .action(async (runId: string, opts: { config: string; output?: string; only?: string }) => {
      const { config, configDir } = requireValidConfig(opts.config);
      const store = openStore(config.storage, configDir);
      const files = await store.runFiles(runId);
      if (!files) throw new UserError(`no run ${runId} in ${store.location}; \`tuneline runs\` lists the runs of this pipeline`);
      const wanted =
        opts.only
          ?.split(',')
          .map((name) => name.trim())
          .filter(Boolean) ?? Object.keys(files);
      const unknown = wanted.filter((name) => !(name in files));
      if (unknown.length) {
        throw new UserError(`run ${runId} has no ${unknown.join(', ')}; it has ${Object.keys(files).sort().join(', ')}`);
      }
      const output = resolve(opts.output ?? runId);
      await mkdir(output, { recursive: true });
      for (const name of wanted) {
        const source = await store.fetch(files[name]!);
        const target = join(output, name);
        await cp(source, target, { recursive: true, dereference: true });
        console.log(`${name.padEnd(22)} ${(files[name]!.bytes / 1e6).toFixed(1).padStart(9)} MB  ${target}`);
      }
      console.log(`Fetched ${wanted.length} file(s) of ${runId} into ${output}`);
    });
}
