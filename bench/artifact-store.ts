/**
 * Artifact store benchmark: put and get throughput of the local store (activities/artifacts.ts) and
 * of the S3 store (activities/object-store/) on a SeaweedFS started on loopback (lib/seaweedfs.ts),
 * over the same bytes, side by side, with the ratio S3 / local.
 *
 *   npm run bench:store                       # both sections: 1 GiB in all, then the pipeline (6 to 8 minutes)
 *   npm run bench:store -- --total-mb 256     # the same mix, scaled
 *   npm run bench:store -- --sections pipeline --repeats 3
 *
 * The mix (at 1024 MiB; every size scales with --total-mb): half in 4 large files (4 x 128 MiB, each
 * a multipart upload of 16 MiB parts), a quarter in a model-like folder (8 x 24 MiB weight shards and
 * 64 x 1 MiB files, stored as one folder), a quarter in 1,024 small files of 256 KiB. Random,
 * incompressible bytes, generated once before anything is timed.
 *
 * What is timed is what a step does with each store:
 * - put: large files and the folder are written to the store's temp path first (not timed), then
 *   `putFile` / `putDir` (local: hash and rename; S3: hash, upload, move into the worker's cache);
 *   small files are `put` from memory (local: hash and write; S3: hash, upload, write to the cache).
 * - get: the bytes back as a verified local path. Local: `verify`, which reads and hashes every byte
 *   (what the step cache does with each output); S3: `fetch` through a new, empty cache folder, so every
 *   byte comes over the network and is hashed on its way to disk.
 * Both stores and SeaweedFS share this machine's disk and page cache: the S3 figures are the cost of
 * the protocol and the store's code on loopback, not of a network.
 *
 * The pipeline section runs the same tiny-model pipeline (test/integration/harness.ts's `tinyRun`: real
 * training, export, evaluation against the base model) on one dev server with a cpu and a gpu worker in
 * this process, once with the local store and once with `storage.artifacts: s3://...`, each with its
 * own empty store and worker cache, alternating for `--repeats` rounds; it prints each step's median
 * seconds and the whole run's, with the ratio S3 / local.
 *
 * Prints a Markdown table and writes bench/results/artifact-store.json. Each section of the benchmark
 * is a function from the shared setup (`BenchSetup`) to its figures, its table and its JSON entry.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ArtifactStore } from '../activities/artifacts';
import { renderMarkdown, type Cell } from '../activities/report/document';
import { ObjectStore } from '../activities/object-store/store';
import { startPipeline } from '../cli/client';
import { loadConfigFile } from '../cli/config';
import { startSeaweedS3, type SeaweedS3 } from '../lib/seaweedfs';
import type { ArtifactRef, PipelineResult } from '../schemas/manifests';
import { buildTinyModel, startInProcessTemporal, tinyRun, writePipeline } from '../test/integration/harness';

const MiB = 1024 * 1024;

/** What every section starts from: a scratch folder, the running SeaweedFS, the size asked for. */
interface BenchSetup {
  workDir: string;
  seaweed: SeaweedS3;
  totalMiB: number;
}

// ---------------------------------------------------------------------------------------------
// Section: throughput of put and get, local store against S3 on SeaweedFS.

type Category = 'large files' | 'model folder' | 'small files';
const CATEGORIES: Category[] = ['large files', 'model folder', 'small files'];

/** The bytes every store is given: large files and the folder on disk, small files in memory. */
interface Payload {
  largeFiles: string[];
  modelFolder: string;
  smallFiles: Buffer[];
  bytes: Record<Category, number>;
  description: string;
}

function generatePayload(dir: string, totalMiB: number): Payload {
  const scaled = (fraction: number) => Math.max(1, Math.round(totalMiB * MiB * fraction));
  const largeBytes = scaled(1 / 8);
  const shardBytes = scaled(3 / 128);
  const folderFileBytes = scaled(1 / 1024);
  const smallBytes = 256 * 1024;
  const smallCount = Math.max(1, Math.round((totalMiB * MiB) / 4 / smallBytes));

  mkdirSync(join(dir, 'large'), { recursive: true });
  const largeFiles = Array.from({ length: 4 }, (_, n) => {
    const path = join(dir, 'large', `file-${n}.bin`);
    writeFileSync(path, randomBytes(largeBytes));
    return path;
  });
  const modelFolder = join(dir, 'model');
  mkdirSync(join(modelFolder, 'tokenizer'), { recursive: true });
  for (let n = 0; n < 8; n++) writeFileSync(join(modelFolder, `model-${n}-of-8.safetensors`), randomBytes(shardBytes));
  for (let n = 0; n < 64; n++) writeFileSync(join(modelFolder, 'tokenizer', `part-${n}.bin`), randomBytes(folderFileBytes));
  const smallPool = randomBytes(smallCount * smallBytes);
  const smallFiles = Array.from({ length: smallCount }, (_, n) => smallPool.subarray(n * smallBytes, (n + 1) * smallBytes));

  const mib = (bytes: number) => `${(bytes / MiB).toFixed(bytes < MiB ? 2 : 0)} MiB`;
  return {
    largeFiles,
    modelFolder,
    smallFiles,
    bytes: {
      'large files': 4 * largeBytes,
      'model folder': 8 * shardBytes + 64 * folderFileBytes,
      'small files': smallCount * smallBytes,
    },
    description:
      `4 large files of ${mib(largeBytes)}; a folder of 8 x ${mib(shardBytes)} and 64 x ${mib(folderFileBytes)}; ` +
      `${smallCount} small files of ${smallBytes / 1024} KiB`,
  };
}

/** One store as the benchmark drives it: the calls a step makes to store its outputs and read its inputs. */
interface StoreUnderTest {
  tempPath(): Promise<string>;
  put(bytes: Uint8Array): Promise<ArtifactRef>;
  putFile(path: string): Promise<ArtifactRef>;
  putDir(dir: string): Promise<ArtifactRef>;
  /** Makes the refs' bytes available as verified local paths. */
  getAll(refs: ArtifactRef[]): Promise<void>;
}

function localStore(root: string): StoreUnderTest {
  const store = new ArtifactStore(root);
  return {
    tempPath: () => store.tempPath(),
    put: (bytes) => store.put(bytes, '.bin', null),
    putFile: (path) => store.putFile(path, '.bin', null),
    putDir: (dir) => store.putDir(dir),
    getAll: async (refs) => {
      for (const ref of refs) if (!(await store.verify(ref))) throw new Error(`${ref.uri} does not verify after it was stored`);
    },
  };
}

function s3Store(uri: string, workDir: string, cacheLimitBytes: number): StoreUnderTest {
  const cacheFolders: string[] = [];
  const freshStore = () => {
    const cacheDir = mkdtempSync(join(workDir, 's3-cache-'));
    cacheFolders.push(cacheDir);
    return new ObjectStore(uri, { cacheDir, cacheLimitBytes });
  };
  const writer = freshStore();
  return {
    tempPath: () => writer.tempPath(),
    put: (bytes) => writer.put(bytes, '.bin', null),
    putFile: (path) => writer.putFile(path, '.bin', null),
    putDir: (dir) => writer.putDir(dir),
    getAll: async (refs) => {
      // The writer's cache now holds everything it stored: a reader on another machine starts empty.
      for (const dir of cacheFolders.splice(0)) rmSync(dir, { recursive: true, force: true });
      const reader = freshStore();
      for (const ref of refs) await reader.fetch(ref);
    },
  };
}

interface Transfer {
  category: Category | 'all';
  bytes: number;
  putSeconds: number;
  getSeconds: number;
}

/** Puts then gets each category of the payload, timing only the store's calls. */
async function transfers(store: StoreUnderTest, payload: Payload): Promise<Transfer[]> {
  const seconds = (started: number) => (performance.now() - started) / 1000;
  const put: Record<Category, { refs: ArtifactRef[]; seconds: number }> = {
    'large files': { refs: [], seconds: 0 },
    'model folder': { refs: [], seconds: 0 },
    'small files': { refs: [], seconds: 0 },
  };
  for (const file of payload.largeFiles) {
    const staged = await store.tempPath();
    cpSync(file, staged);
    const started = performance.now();
    put['large files'].refs.push(await store.putFile(staged));
    put['large files'].seconds += seconds(started);
  }
  const stagedFolder = await store.tempPath();
  cpSync(payload.modelFolder, stagedFolder, { recursive: true });
  let started = performance.now();
  put['model folder'].refs.push(await store.putDir(stagedFolder));
  put['model folder'].seconds += seconds(started);
  started = performance.now();
  for (const bytes of payload.smallFiles) put['small files'].refs.push(await store.put(bytes));
  put['small files'].seconds += seconds(started);

  const out: Transfer[] = [];
  for (const category of CATEGORIES) {
    started = performance.now();
    await store.getAll(put[category].refs);
    out.push({ category, bytes: payload.bytes[category], putSeconds: put[category].seconds, getSeconds: seconds(started) });
  }
  return out;
}

interface ThroughputResult {
  mix: string;
  totalBytes: number;
  local: Transfer[];
  s3: Transfer[];
}

async function measureThroughput({ workDir, seaweed, totalMiB }: BenchSetup): Promise<ThroughputResult> {
  const payloadDir = join(workDir, 'payload');
  console.error(`generating ${totalMiB} MiB of random bytes`);
  const payload = generatePayload(payloadDir, totalMiB);
  const totalBytes = CATEGORIES.reduce((sum, category) => sum + payload.bytes[category], 0);

  console.error('local store: put, then get');
  const localRoot = join(workDir, 'local-store');
  const local = await transfers(localStore(localRoot), payload);
  rmSync(localRoot, { recursive: true, force: true });

  console.error('S3 store on SeaweedFS: put, then get through an empty cache');
  // Large enough that nothing is evicted while the benchmark reads: eviction is not what is measured.
  const s3 = await transfers(s3Store(`s3://${seaweed.bucket}/bench`, workDir, 2 * totalBytes), payload);
  rmSync(payloadDir, { recursive: true, force: true });
  return { mix: payload.description, totalBytes, local, s3 };
}

/** One row of the result: a category (or all) and an operation, each store's seconds and MiB/s, their ratio. */
interface ThroughputFigure {
  measurement: string;
  bytes: number;
  localSeconds: number;
  s3Seconds: number;
  localMiBPerSecond: number;
  s3MiBPerSecond: number;
  /** S3 MiB/s over local MiB/s: 0.25 means S3 moved the bytes at a quarter of the local store's rate. */
  ratio: number;
}

function throughputFigures({ totalBytes, local, s3 }: ThroughputResult): ThroughputFigure[] {
  const total = (rows: Transfer[]): Transfer => ({
    category: 'all',
    bytes: totalBytes,
    putSeconds: rows.reduce((sum, row) => sum + row.putSeconds, 0),
    getSeconds: rows.reduce((sum, row) => sum + row.getSeconds, 0),
  });
  const pairs = [...local.map((row, n) => [row, s3[n]!] as const), [total(local), total(s3)] as const];
  return pairs.flatMap(([localRow, s3Row]) =>
    (['put', 'get'] as const).map((op) => {
      const [localSeconds, s3Seconds] = [localRow[`${op}Seconds`], s3Row[`${op}Seconds`]];
      const [localMiBPerSecond, s3MiBPerSecond] = [localRow.bytes / MiB / localSeconds, s3Row.bytes / MiB / s3Seconds];
      return {
        measurement: `${localRow.category}, ${op} (${(localRow.bytes / MiB).toFixed(0)} MiB)`,
        bytes: localRow.bytes,
        localSeconds,
        s3Seconds,
        localMiBPerSecond,
        s3MiBPerSecond,
        ratio: s3MiBPerSecond / localMiBPerSecond,
      };
    }),
  );
}

function throughputTable(figures: ThroughputFigure[]): string {
  const rows: Cell[][] = figures.map((f) => [
    f.measurement,
    `${f.localMiBPerSecond.toFixed(0)} (${f.localSeconds.toFixed(1)} s)`,
    `${f.s3MiBPerSecond.toFixed(0)} (${f.s3Seconds.toFixed(1)} s)`,
    `${f.ratio.toFixed(2)}x`,
  ]);
  return renderMarkdown([
    {
      kind: 'table',
      header: ['measurement', 'local store MiB/s', 'S3 on SeaweedFS MiB/s', 'ratio S3 / local'],
      rows,
      numeric: [false, true, true, true],
    },
  ]);
}

// ---------------------------------------------------------------------------------------------
// Section: a whole tiny-model pipeline on the local store and on S3.

type StoreKind = 'local' | 's3';

/** One run's seconds: the whole run as the client waited for it, and each step's own. */
interface PipelineTiming {
  store: StoreKind;
  wallSeconds: number;
  steps: Record<string, number>;
}

interface PipelineFigure {
  measurement: string;
  localSeconds: number;
  s3Seconds: number;
  /** S3 seconds over local seconds: 1.2 means the step took a fifth longer on S3. */
  ratio: number;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function measurePipeline({ workDir, seaweed }: BenchSetup, repeats: number): Promise<PipelineTiming[]> {
  const tinyModel = buildTinyModel();
  // Workers and client keep their read-through caches here; each S3 run gets a new, empty one below.
  const temporal = await startInProcessTemporal(join(workDir, 'temporal'));
  const timings: PipelineTiming[] = [];
  try {
    for (let round = 0; round < repeats; round++) {
      for (const store of ['local', 's3'] as const) {
        const dir = mkdtempSync(join(workDir, `pipeline-${store}-`));
        process.env.TUNELINE_CACHE_DIR = join(dir, 'cache');
        const path = writePipeline(dir, {
          name: 'bench-store',
          ...tinyRun(tinyModel, 16),
          // The model registry is local-only; both runs end as candidates.
          promotion: 'manual',
          // A new prefix each run: nothing is reused from an earlier round.
          ...(store === 's3' ? { storage: { artifacts: `s3://${seaweed.bucket}/pipeline-${round}` } } : {}),
        });
        console.error(`pipeline round ${round + 1} of ${repeats}, ${store} store`);
        const started = performance.now();
        const result: PipelineResult = await (await startPipeline(temporal.client, loadConfigFile(path))).result();
        const wallSeconds = (performance.now() - started) / 1000;
        if (!result.evaluation) throw new Error(`the ${store} pipeline ended ${result.outcome}, without an evaluation`);
        const steps: Record<string, number> = {};
        for (const step of result.steps) if (!step.reused) steps[step.step] = (steps[step.step] ?? 0) + step.seconds;
        timings.push({ store, wallSeconds, steps });
      }
    }
  } finally {
    await temporal.stop();
  }
  return timings;
}

function pipelineFigures(timings: PipelineTiming[]): PipelineFigure[] {
  const of = (store: StoreKind) => timings.filter((t) => t.store === store);
  const figure = (measurement: string, read: (t: PipelineTiming) => number): PipelineFigure => {
    const [localSeconds, s3Seconds] = [median(of('local').map(read)), median(of('s3').map(read))];
    return { measurement, localSeconds, s3Seconds, ratio: s3Seconds / localSeconds };
  };
  const stepNames = [...new Set(timings.flatMap((t) => Object.keys(t.steps)))];
  return [...stepNames.map((name) => figure(name, (t) => t.steps[name] ?? 0)), figure('whole run (wall)', (t) => t.wallSeconds)];
}

function pipelineTable(figures: PipelineFigure[]): string {
  return renderMarkdown([
    {
      kind: 'table',
      header: ['step', 'local store s', 'S3 on SeaweedFS s', 'ratio S3 / local'],
      rows: figures.map((f) => [f.measurement, f.localSeconds.toFixed(2), f.s3Seconds.toFixed(2), `${f.ratio.toFixed(2)}x`]),
      numeric: [false, true, true, true],
    },
  ]);
}

// ---------------------------------------------------------------------------------------------

const SECTIONS = ['throughput', 'pipeline'] as const;
type Section = (typeof SECTIONS)[number];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'total-mb': { type: 'string', default: '1024' },
      sections: { type: 'string', default: SECTIONS.join(',') },
      repeats: { type: 'string', default: '1' },
    },
  });
  const totalMiB = Number(values['total-mb']);
  if (!Number.isInteger(totalMiB) || totalMiB < 8)
    throw new Error(`--total-mb must be a whole number of MiB, at least 8, not "${values['total-mb']}"`);
  const repeats = Number(values.repeats);
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`--repeats must be a whole number, at least 1, not "${values.repeats}"`);
  const sections = values.sections.split(',').map((name) => name.trim());
  const unknown = sections.filter((name) => !SECTIONS.includes(name as Section));
  if (unknown.length) throw new Error(`--sections: unknown ${unknown.join(', ')}; choose from ${SECTIONS.join(', ')}`);

  const started = performance.now();
  const loadBefore = os.loadavg();
  const workDir = mkdtempSync(join(os.tmpdir(), 'tuneline-bench-store-'));
  let seaweed: SeaweedS3 | undefined;
  try {
    // SeaweedFS's volumes hold 64 MiB each; room for everything twice over.
    seaweed = await startSeaweedS3({
      bucket: 'tuneline-bench',
      dir: join(workDir, 'weed'),
      maxVolumes: 16 + Math.ceil((2 * totalMiB) / 64),
    });
    // The S3 store reads the standard AWS variables, as it would on a worker.
    Object.assign(process.env, seaweed.env);
    console.error(`SeaweedFS answered S3 after ${seaweed.startSeconds.toFixed(1)} s`);
    const setup: BenchSetup = { workDir, seaweed, totalMiB };

    const throughput = sections.includes('throughput') ? await measureThroughput(setup) : undefined;
    const pipeline = sections.includes('pipeline') ? await measurePipeline(setup, repeats) : undefined;

    const loadAfter = os.loadavg();
    const machine = { cpus: os.availableParallelism(), memoryGiB: Math.round(os.totalmem() / 2 ** 30), loadBefore, loadAfter };
    console.log(`\n${machine.cpus} CPUs, load average ${loadBefore[0]!.toFixed(1)} before and ${loadAfter[0]!.toFixed(1)} after`);
    if (throughput) {
      console.log(`\nArtifact store throughput, ${(throughput.totalBytes / MiB).toFixed(0)} MiB: ${throughput.mix}\n`);
      console.log(throughputTable(throughputFigures(throughput)));
    }
    if (pipeline) {
      console.log(`\nA tiny-model pipeline (16 training steps), median of ${repeats} run(s) on each store\n`);
      console.log(pipelineTable(pipelineFigures(pipeline)));
    }
    const resultsDir = join(import.meta.dirname, 'results');
    mkdirSync(resultsDir, { recursive: true });
    const result = {
      machine,
      settings: { totalMiB, sections, repeats },
      throughput: throughput && { ...throughput, figures: throughputFigures(throughput) },
      pipeline: pipeline && { runs: pipeline, figures: pipelineFigures(pipeline) },
      wallSeconds: (performance.now() - started) / 1000,
    };
    writeFileSync(join(resultsDir, 'artifact-store.json'), JSON.stringify(result, null, 2));
    console.error('written to bench/results/artifact-store.json');
  } finally {
    await seaweed?.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

await main();
