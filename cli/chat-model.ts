/**
 * The model `tuneline serve` answers with: a pipeline's production model (from the registry and its
 * run manifest, served with the retrieval and decoding it was evaluated with) or an export folder
 * named on the command line (no retrieval). `watchProduction` reloads when the pointer moves; which
 * run is production is cli/models.ts's to say.
 */
import { unwatchFile, watchFile } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { StepStore } from '../activities/artifacts';
import { knownPair, openRetriever } from '../activities/grounding';
import { readProduction, registryFolder } from '../activities/registry';
import { PipelineConfig } from '../schemas/config';
import type { RunManifest } from '../schemas/manifests';
import { loadGenerator } from '../serve/generation';
import type { ChatModel } from '../serve/server';
import { UserError } from './config';

/** The step output a run manifest recorded, e.g. the `export-embedder` step's `embedder`. */
const stepOutput = (manifest: RunManifest, step: string, name: string) => manifest.steps.find((s) => s.step === step)?.outputs[name];

/** A run's exported model with the retrieval it was trained and evaluated with. */
export async function loadRunModel(store: StepStore, manifest: RunManifest): Promise<ChatModel> {
  if (!manifest.artifacts.onnx) throw new UserError(`run ${manifest.runId} exported no model to serve`);
  const config = PipelineConfig.parse(manifest.config.resolved);
  const generator = await loadGenerator(await store.fetch(manifest.artifacts.onnx));
  const { k, maxPairChars } = config.training.grounding;
  const { endProbability, ...controls } = config.decoding;
  let retrieval: Awaited<ReturnType<typeof openRetriever>> | undefined;
  if (k > 0) {
    const train = manifest.artifacts['train.arrow'];
    if (!train) throw new UserError(`run ${manifest.runId} trained with grounding but its run folder has no train.arrow`);
    retrieval = await openRetriever(store, {
      config,
      train,
      knowledge: manifest.artifacts['knowledge.arrow'],
      embedder: stepOutput(manifest, 'export-embedder', 'embedder'),
      index: stepOutput(manifest, 'retrieval-index', 'index'),
    });
  }
  const open = retrieval;
  return {
    id: `${manifest.pipeline}@${manifest.runId}`,
    generator,
    decoding: { ...controls, endProbability: endProbability ?? undefined },
    knownPairs: open
      ? async (question) => (await open.retriever.retrieve([question], k))[0]!.map((hit) => knownPair(hit.row, hit.score, maxPairChars))
      : null,
    close: async () => {
      await generator.close();
      await open?.close();
    },
  };
}

/** An export folder as it is: greedy answers, no retrieval. */
export async function loadExportModel(exportDir: string): Promise<ChatModel> {
  const generator = await loadGenerator(exportDir);
  return { id: basename(resolve(exportDir)), generator, decoding: {}, knownPairs: null, close: () => generator.close() };
}

/** Calls `moved` with the new pointer each time the production pointer moves (polled every `intervalMs`). */
export function watchProduction(config: PipelineConfig, configDir: string, moved: (runId: string) => void, intervalMs = 1000): () => void {
  const file = join(registryFolder(config, configDir), 'production.json');
  let current = readProduction(registryFolder(config, configDir))?.runId;
  const listener = () => {
    const next = readProduction(registryFolder(config, configDir))?.runId;
    if (next && next !== current) {
      current = next;
      moved(next);
    }
  };
  watchFile(file, { interval: intervalMs }, listener);
  return () => unwatchFile(file, listener);
}
