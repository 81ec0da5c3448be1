/**
 * `tuneline models list | show | promote | rollback | log`: the model registry of a pipeline. The
 * models are the runs' exported models, read from their run manifests; the registry adds only the
 * `production` pointer and the log of who moved it, when and why (activities/registry.ts).
 */
import type { Command } from 'commander';
import {
  movePointer,
  promotionOf,
  promotionRefusal,
  readProduction,
  readRegistryLog,
  registryFolder,
  whoAmI,
  type RegistryEvent,
} from '../../activities/registry';
import type { PipelineConfig } from '../../schemas/config';
import type { RunManifest } from '../../schemas/manifests';
import { verifyArtifacts } from '../audit';
import { UserError, requireValidConfig, type LoadedConfig } from '../config';
import { pipelineModels, runManifest } from '../models';
import { printTable } from '../table';

type Loaded = LoadedConfig & { config: PipelineConfig };

/** The served system's value of the first gate's metric, as the list shows it. */
function headline(m: RunManifest): string {
  const gate = m.gate?.results[0];
  return gate?.value != null ? `${gate.gate.metric} ${gate.value.toFixed(3)}` : '-';
}

const describeEvent = (e: RegistryEvent) =>
  `${e.at}  ${e.action}${e.forced ? ' (forced)' : ''} ${e.runId} by ${e.by}: ${e.reason}${e.previous ? ` (replacing ${e.previous})` : ''}`;

/** Moves the pointer after checking the model: gates passed (or forced with a reason) and its files intact. */
async function move(loaded: Loaded, manifest: RunManifest, action: RegistryEvent['action'], opts: { force?: boolean; reason?: string }) {
  const refusal = promotionRefusal(manifest);
  const problems: string[] = [];
  if (refusal && !manifest.artifacts.onnx) problems.push(refusal);
  else if (refusal && !opts.force) problems.push(`${refusal}; to ${action} it anyway pass --force --reason "why"`);
  if (opts.force && !opts.reason) problems.push('--force needs --reason: the registry log records why a model was forced through');
  if (problems.length > 0) throw new UserError(problems.join('\n'));
  const [check] = await verifyArtifacts([{ names: ['onnx'], ref: manifest.artifacts.onnx! }]);
  if (check!.status !== 'intact')
    throw new UserError(
      `${manifest.runId}'s exported model is ${check!.status} (${check!.ref.uri}); tuneline audit verify ${manifest.runId} says more`,
    );
  const reason = opts.reason ?? (action === 'promote' ? 'every gate passed' : 'rolled back');
  return movePointer(
    registryFolder(loaded.config, loaded.configDir),
    promotionOf(manifest, { action, forced: Boolean(refusal), reason, by: whoAmI() }),
  );
}

export function registerModels(program: Command): void {
  const models = program.command('models').description("A pipeline's models and its production pointer (the model registry).");
  const configOption = (c: Command) => c.option('-c, --config <file>', 'pipeline file', 'temporal.yaml');

  configOption(models.command('list'))
    .description('Every model the pipeline exported, newest first: its gate verdict and which is production.')
    .option('--json', 'print a JSON array')
    .action((opts: { config: string; json?: boolean }) => {
      const loaded = requireValidConfig(opts.config);
      const production = readProduction(registryFolder(loaded.config, loaded.configDir));
      const rows = pipelineModels(loaded.config, loaded.configDir).map((m) => ({
        runId: m.runId,
        production: m.runId === production?.runId,
        startedAt: m.startedAt,
        outcome: m.outcome,
        verdict: m.gate?.verdict ?? null,
        headline: headline(m),
        dataset: m.data?.source.sha256 ?? null,
        configHash: m.config.hash,
        model: m.artifacts.onnx!,
      }));
      if (opts.json) return console.log(JSON.stringify(rows));
      if (rows.length === 0) return console.log(`No exported models of ${loaded.config.name} yet.`);
      printTable([
        ['', 'run', 'started', 'verdict', 'first gate metric', 'data'],
        ...rows.map((r) => [r.production ? '*' : '', r.runId, r.startedAt, r.verdict ?? '-', r.headline, r.dataset?.slice(0, 12) ?? '-']),
      ]);
      if (production) console.log(`\n* production since ${production.at} (${production.action} by ${production.by}: ${production.reason})`);
    });

  configOption(models.command('show'))
    .description('One model: its data, config, base model, metrics, gates, files, and every registry move that named it.')
    .argument('<run-id>', 'the run that made it')
    .option('--json', 'print one JSON object')
    .action((runId: string, opts: { config: string; json?: boolean }) => {
      const loaded = requireValidConfig(opts.config);
      const m = runManifest(loaded.config, loaded.configDir, runId);
      const folder = registryFolder(loaded.config, loaded.configDir);
      const moves = readRegistryLog(folder).filter((e) => e.runId === runId || e.previous === runId);
      const production = readProduction(folder)?.runId === runId;
      if (opts.json) return console.log(JSON.stringify({ production, manifest: m, moves }, null, 2));
      console.log(`${m.runId}${production ? ' (production)' : ''}: ${m.outcome ?? m.status}`);
      console.log(`  data ${m.data?.source.sha256 ?? '-'}  config ${m.config.hash}  code ${m.code.commit ?? m.code.version}`);
      if (m.baseModel) console.log(`  base model ${JSON.stringify(m.baseModel)}`);
      console.log(`  model ${m.artifacts.onnx!.uri} (sha256 ${m.artifacts.onnx!.sha256})`);
      for (const r of m.gate?.results ?? [])
        console.log(`  gate ${r.status.padEnd(7)} ${r.rule}${r.value != null ? `: ${r.value.toFixed(4)}` : ''}`);
      for (const e of moves) console.log(`  ${describeEvent(e)}`);
    });

  configOption(models.command('promote'))
    .description("Make a run's model the production model; refused when its gates did not pass, unless --force --reason.")
    .argument('<run-id>', 'the run that made it')
    .option('--force', 'promote a model whose gates did not pass (needs --reason)')
    .option('--reason <text>', 'why, for the registry log')
    .action(async (runId: string, opts: { config: string; force?: boolean; reason?: string }) => {
      const loaded = requireValidConfig(opts.config);
      const moved = await move(loaded, runManifest(loaded.config, loaded.configDir, runId), 'promote', opts);
      console.log(`${moved.runId} is the production model of ${moved.pipeline} (before: ${moved.previous ?? 'none'}).`);
    });

  configOption(models.command('rollback'))
    .description('Point production back at the model it replaced (or at --to RUN_ID); the reason is recorded.')
    .option('--to <run-id>', 'the model to go back to; the one the current production model replaced when absent')
    .requiredOption('--reason <text>', 'why, for the registry log')
    .option('--force', 'allow a model whose gates did not pass')
    .action(async (opts: { config: string; to?: string; reason: string; force?: boolean }) => {
      const loaded = requireValidConfig(opts.config);
      const current = readProduction(registryFolder(loaded.config, loaded.configDir));
      const target = opts.to ?? current?.previous;
      if (!target)
        throw new UserError(
          current
            ? `${current.runId} replaced no model; name one with --to RUN_ID`
            : `${loaded.config.name} has no production model to roll back`,
        );
      if (target === current?.runId) throw new UserError(`${target} is the production model already`);
      const moved = await move(loaded, runManifest(loaded.config, loaded.configDir, target), 'rollback', opts);
      console.log(`Rolled back: ${moved.runId} is the production model of ${moved.pipeline} (before: ${moved.previous ?? 'none'}).`);
    });

  configOption(models.command('log'))
    .description('Every move of the production pointer: who, when, why, forced or not.')
    .option('--json', 'print a JSON array')
    .action((opts: { config: string; json?: boolean }) => {
      const loaded = requireValidConfig(opts.config);
      const log = readRegistryLog(registryFolder(loaded.config, loaded.configDir));
      if (opts.json) return console.log(JSON.stringify(log));
      if (log.length === 0) return console.log(`${loaded.config.name} has never had a production model.`);
      for (const e of log) console.log(describeEvent(e));
    });
}
