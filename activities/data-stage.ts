/**
 * The data-stage activities (cpu task queue): source, ingest, clean, dedup, split, feedback, knowledge, report. Each takes
 * small manifests, does its work through the step cache and returns a StepResult: artifact
 * references, counts and its own summary line, never the rows themselves. User errors (bad data)
 * become non-retryable failures with a message a person can act on.
 */
import { copyFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { PipelineConfig } from '../schemas/config';
import type { ArtifactRef, StepContext, StepResult } from '../schemas/manifests';
import type { GroupedRow, QaRow, SplitName } from '../schemas/rows';
import { writeSampleJsonl } from '../sample-data/generate';
import { sha256File, toJsonl, type StepStore } from './artifacts';
import { codeVersion } from './code-version';
import { ApplicationFailure } from '@temporalio/activity';
import { ErrorTypes } from '../schemas/errors';
import { configuredPath, storeFor } from './context';
import { readRows, writeRows } from './data/arrow-io';
import { cleanRows, type CleanStats } from './data/clean';
import { deduplicate, type DedupStats } from './data/dedup';
import { DatasetError, checkInvalidShare, validateRecords, type IngestStats } from './data/ingest';
import { prepareFeedback } from './data/feedback';
import { prepareKnowledge } from './data/knowledge';
import { qaFileKey, type QaFileList } from './data/qa-files';
import { UnsupportedFormatError, detectFormat, readRecords, type DataFormat } from './data/readers';
import {
  buildDataReport,
  renderDataReportMarkdown,
  type DataStageSteps,
  type FeedbackStats,
  type KnowledgeStats,
  type SourceStats,
} from './data/report';
import { splitRows, type SplitStats } from './data/split';
import { beat, runCachedStep, runUncachedStep } from './steps';

const code = () => codeVersion(import.meta.url);

/** Turns the data readers' user errors into non-retryable failures; anything else stays retryable. */
async function asUserErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DatasetError || err instanceof UnsupportedFormatError) {
      throw ApplicationFailure.nonRetryable(err.message, ErrorTypes.data);
    }
    throw err;
  }
}

/** `name=value` pairs of the counts a person looks at first. */
const counts = (values: Record<string, number>) =>
  Object.entries(values)
    .map(([name, value]) => `${name}=${value}`)
    .join(' ');

/**
 * The rows' origin. The sample set is generated into the store (cached by rows, seed and products).
 * A data file is copied into the store (`data.snapshot`, the default), so the run manifest can
 * prove later which bytes trained the model even if the file changes; without a snapshot it is
 * only hashed in place.
 */
export async function prepareSource(context: StepContext): Promise<StepResult<SourceStats, 'source'>> {
  return asUserErrors(async () => {
    const store = storeFor(context);
    const { data } = context.config;
    if (data.sample) {
      const sample = data.sample;
      return runCachedStep(
        store,
        {
          step: 'source',
          config: { sample },
          inputs: [],
          code: code(),
          noCache: context.noCache,
          summarize: () =>
            `sample set: ${sample.rows} rows, seed ${sample.seed}${sample.products ? `, ${sample.products} product(s)` : ''}`,
        },
        async () => {
          const tmp = await store.tempPath();
          await writeSampleJsonl(tmp, sample.rows, sample.seed, sample.products);
          const ref = await store.putFile(tmp, '.jsonl', sample.rows);
          return { outputs: { source: ref }, stats: { kind: 'sample', path: ref.uri, format: 'jsonl', snapshot: true } };
        },
      );
    }
    const staged = context.staged?.[data.path!];
    if (staged) {
      // The client stored the file in the bucket before the run: that copy is the snapshot.
      return runUncachedStep<SourceStats, 'source'>(
        {
          step: 'source',
          config: { snapshot: true },
          inputs: [staged],
          code: code(),
          summarize: () =>
            `${data.path} (${(staged.bytes / 1e6).toFixed(1)} MB, sha256 ${staged.sha256.slice(0, 12)}), staged in the store`,
        },
        async () => ({
          outputs: { source: staged },
          stats: { kind: 'file', path: data.path!, format: detectFormat(data.path!, data.format), snapshot: true },
        }),
      );
    }
    const path = resolve(context.configDir, data.path!);
    const size = await stat(path).then(
      (s) => s.size,
      () => {
        throw new DatasetError(
          `data file not found: ${path}. Check data.path in temporal.yaml (relative paths start at the YAML file's folder).`,
        );
      },
    );
    const format = detectFormat(path, data.format);
    const sha256 = await sha256File(path);
    const inPlace: ArtifactRef = { uri: pathToFileURL(path).href, sha256, bytes: size, rows: null };
    return runUncachedStep<SourceStats, 'source'>(
      {
        step: 'source',
        config: { snapshot: data.snapshot },
        inputs: [inPlace],
        code: code(),
        summarize: (stats) =>
          `${stats.path} (${(size / 1e6).toFixed(1)} MB, sha256 ${sha256.slice(0, 12)})${stats.snapshot ? ', snapshot kept in the store' : ''}`,
      },
      async () => {
        if (!data.snapshot) return { outputs: { source: inPlace }, stats: { kind: 'file', path, format, snapshot: false } };
        const tmp = await store.tempPath();
        await copyFile(path, tmp);
        // Hash the copy, not the file: the file may have changed since it was hashed above.
        const snapshot = await store.putFile(tmp, `.${format}`, null);
        return { outputs: { source: snapshot }, stats: { kind: 'file', path, format, snapshot: true } };
      },
    );
  });
}

export async function ingestData(context: StepContext & { source: StepResult<SourceStats, 'source'> }) {
  return asUserErrors(async () => {
    const store = storeFor(context);
    const { data } = context.config;
    const source = context.source.outputs.source;
    const config = {
      columns: data.columns,
      format: data.format,
      maxRows: data.maxRows,
      maxQ: data.maxQuestionChars,
      maxA: data.maxAnswerChars,
      maxBad: data.maxInvalidFraction,
    };
    return runCachedStep(
      store,
      {
        step: 'ingest',
        config,
        inputs: [source],
        code: code(),
        noCache: context.noCache,
        summarize: (s: IngestStats) => counts({ rowsIn: s.rowsIn, valid: s.valid, quarantined: s.quarantined }),
      },
      async () => {
        const path = await store.fetch(source);
        // A snapshot is named by its hash: errors name the file the user configured.
        const { format, path: shownPath } = context.source.stats;
        const records = await readRecords(path, format, data.maxRows, shownPath);
        beat({ step: 'ingest', read: records.length });
        const result = validateRecords(records, data);
        checkInvalidShare(result, data);
        return {
          outputs: {
            rows: await writeRows(store, result.rows),
            quarantine: await store.put(toJsonl(result.quarantine), '.jsonl', result.quarantine.length),
          },
          stats: result.stats,
        };
      },
    );
  });
}

export async function cleanData(context: StepContext & { rows: ArtifactRef }) {
  const store = storeFor(context);
  return runCachedStep(
    store,
    {
      step: 'clean',
      config: context.config.clean,
      inputs: [context.rows],
      code: code(),
      noCache: context.noCache,
      summarize: (s: CleanStats) => counts({ rowsIn: s.rowsIn, rowsOut: s.rowsOut }),
    },
    async () => {
      const result = cleanRows(await readRows<QaRow>(store, context.rows), context.config.clean);
      return {
        outputs: {
          rows: await writeRows(store, result.rows),
          removed: await store.put(toJsonl(result.removedRows), '.jsonl', result.removedRows.length),
        },
        stats: result.stats,
      };
    },
  );
}

export async function dedupData(context: StepContext & { rows: ArtifactRef }) {
  const store = storeFor(context);
  return runCachedStep(
    store,
    {
      step: 'dedup',
      config: context.config.dedup,
      inputs: [context.rows],
      code: code(),
      noCache: context.noCache,
      summarize: (s: DedupStats) =>
        counts({
          rowsIn: s.rowsIn,
          rowsOut: s.rowsOut,
          exactDuplicates: s.exactDuplicates,
          nearDuplicates: s.nearDuplicates,
          conflictGroups: s.conflictGroups,
        }),
    },
    async () => {
      const result = deduplicate(await readRows<QaRow>(store, context.rows), context.config.dedup);
      return {
        outputs: {
          rows: await writeRows(store, result.rows),
          removed: await store.put(toJsonl(result.removedRows), '.jsonl', result.removedRows.length),
          conflicts: await store.put(toJsonl(result.conflicts), '.jsonl', result.conflicts.length),
        },
        stats: result.stats,
      };
    },
  );
}

export async function splitData(context: StepContext & { rows: ArtifactRef }) {
  const store = storeFor(context);
  return runCachedStep(
    store,
    {
      step: 'split',
      config: context.config.split,
      inputs: [context.rows],
      code: code(),
      noCache: context.noCache,
      summarize: (s: SplitStats) => counts(s.counts),
    },
    async () => {
      const { splits, stats } = splitRows(await readRows<GroupedRow>(store, context.rows), context.config.split);
      return {
        outputs: {
          train: await writeRows(store, splits.train),
          validation: await writeRows(store, splits.validation),
          test: await writeRows(store, splits.test),
        },
        stats,
      };
    },
  );
}

/** A configured file hashed in place: the step records its sha256 as an input, the rows made from it are stored. */
interface HashedFile {
  entry: QaFileEntry;
  path: string;
  format: DataFormat;
  ref: ArtifactRef;
}
type QaFileEntry = PipelineConfig['data']['feedback'][number];

/** Hashes each file of a config list where it lies; a missing file or an unknown format names its key. */
function hashQaFiles(list: QaFileList, entries: QaFileEntry[], context: StepContext): Promise<HashedFile[]> {
  return Promise.all(
    entries.map(async (entry, n) => {
      const staged = context.staged?.[entry.path];
      const path = await configuredPath(context, entry.path);
      const bytes = await stat(path).then(
        (s) => s.size,
        () => {
          throw new DatasetError(
            `${qaFileKey(list, n, entry.path)}: file not found: ${path}. Relative paths start at the YAML file's folder.`,
          );
        },
      );
      let format;
      try {
        format = detectFormat(path, entry.format);
      } catch (err) {
        throw new UnsupportedFormatError(`${qaFileKey(list, n, entry.path)}: ${(err as Error).message}`);
      }
      const ref: ArtifactRef = staged ?? { uri: pathToFileURL(path).href, sha256: await sha256File(path), bytes, rows: null };
      return { entry, path, format, ref };
    }),
  );
}

/** Reads the hashed files' records, one heartbeat per file; a reader's error names the file's key. */
async function readQaFiles(list: QaFileList, step: string, files: HashedFile[]) {
  const read = [];
  for (const [n, file] of files.entries()) {
    try {
      read.push({ path: file.entry.path, records: await readRecords(file.path, file.format, undefined, file.entry.path) });
    } catch (err) {
      if (err instanceof DatasetError) throw new DatasetError(`${qaFileKey(list, n, file.entry.path)}: ${err.message}`);
      throw err;
    }
    beat({ step, files: n + 1 });
  }
  return read;
}

const readSplits = async (store: StepStore, splits: Record<SplitName, ArtifactRef>): Promise<Record<SplitName, GroupedRow[]>> => {
  const [train, validation, test] = await Promise.all(
    [splits.train, splits.validation, splits.test].map((ref) => readRows<GroupedRow>(store, ref)),
  );
  return { train: train!, validation: validation!, test: test! };
};

const sum = <T>(items: T[], count: (item: T) => number) => items.reduce((total, item) => total + count(item), 0);

/**
 * The feedback files (`data.feedback`) added to the training split: validated, cleaned and
 * deduplicated by the data's rules, without rejected answers and without the rows whose question
 * is a validation or test question. Hashed in place (the step's inputs record each file's sha256);
 * its `train` output is the data's training rows, then the feedback rows.
 */
export async function prepareFeedbackFiles(context: StepContext & { splits: Record<SplitName, ArtifactRef> }) {
  return asUserErrors(async () => {
    const store = storeFor(context);
    const { config } = context;
    const files = await hashQaFiles('data.feedback', config.data.feedback, context);
    const { train, validation, test } = context.splits;
    return runCachedStep(
      store,
      {
        step: 'feedback',
        config: { data: config.data, clean: config.clean, dedup: config.dedup },
        inputs: [...files.map((f) => f.ref), train, validation, test],
        code: code(),
        noCache: context.noCache,
        summarize: (s: FeedbackStats) =>
          `${s.rows} feedback rows from ${s.files.length} file(s) added to the training split (now ${s.trainRows} rows): ` +
          counts({
            rowsIn: sum(s.files, (f) => f.rowsIn),
            rejected: sum(s.files, (f) => f.rejected),
            quarantined: sum(s.files, (f) => f.quarantined),
            repeatsHeldOut: sum(s.files, (f) => f.repeatsHeldOut.validation + f.repeatsHeldOut.test),
          }),
      },
      async () => {
        const read = await readQaFiles('data.feedback', 'feedback', files);
        const data = await readSplits(store, context.splits);
        const result = prepareFeedback(read, data, config);
        const rows = [...data.train, ...result.rows];
        return {
          outputs: {
            train: await writeRows(store, rows),
            quarantine: await store.put(toJsonl(result.quarantine), '.jsonl', result.quarantine.length),
            removed: await store.put(toJsonl(result.removed), '.jsonl', result.removed.length),
          },
          stats: {
            files: result.files.map((file, n) => ({ ...file, sha256: files[n]!.ref.sha256 })),
            rows: result.rows.length,
            trainRows: rows.length,
          },
        };
      },
    );
  });
}

/**
 * The knowledge files (`retrieval.knowledge`) as rows for the retriever: validated, cleaned and
 * deduplicated by the data's rules, without the pairs that repeat a question of the splits (the
 * training split with its feedback rows, when the config names feedback files). Hashed in place
 * (the step's inputs record each file's sha256); the rows made from them are stored.
 */
export async function prepareKnowledgeFiles(context: StepContext & { splits: Record<SplitName, ArtifactRef> }) {
  return asUserErrors(async () => {
    const store = storeFor(context);
    const { config } = context;
    const files = await hashQaFiles('retrieval.knowledge', config.retrieval.knowledge, context);
    const { train, validation, test } = context.splits;
    return runCachedStep(
      store,
      {
        step: 'knowledge',
        config: { knowledge: config.retrieval.knowledge, data: config.data, clean: config.clean, dedup: config.dedup },
        inputs: [...files.map((f) => f.ref), train, validation, test],
        code: code(),
        noCache: context.noCache,
        summarize: (s: KnowledgeStats) =>
          `${s.rows} known pairs from ${s.files.length} file(s): ` +
          counts({
            rowsIn: sum(s.files, (f) => f.rowsIn),
            quarantined: sum(s.files, (f) => f.quarantined),
            repeatsData: sum(s.files, (f) => f.repeatsData.train + f.repeatsData.validation + f.repeatsData.test),
          }),
      },
      async () => {
        const read = await readQaFiles('retrieval.knowledge', 'knowledge', files);
        const result = prepareKnowledge(read, await readSplits(store, context.splits), config);
        return {
          outputs: {
            rows: await writeRows(store, result.rows),
            quarantine: await store.put(toJsonl(result.quarantine), '.jsonl', result.quarantine.length),
            removed: await store.put(toJsonl(result.removed), '.jsonl', result.removed.length),
          },
          stats: { files: result.files.map((file, n) => ({ ...file, sha256: files[n]!.ref.sha256 })), rows: result.rows.length },
        };
      },
    );
  });
}

export async function writeDataReport(context: StepContext & { steps: DataStageSteps }) {
  const store = storeFor(context);
  const { source, ingest, clean, dedup, split, feedback, knowledge } = context.steps;
  const inputs = [source, ingest, clean, dedup, split, ...(feedback ? [feedback] : []), ...(knowledge ? [knowledge] : [])].flatMap((s) =>
    Object.values<ArtifactRef>(s.outputs),
  );
  const also = [feedback ? 'every feedback row trained on' : '', knowledge ? 'every knowledge row indexed' : ''].filter(Boolean);
  return runCachedStep(
    store,
    {
      step: 'report',
      config: { name: context.config.name },
      inputs,
      code: code(),
      noCache: context.noCache,
      summarize: (s: { balanced: boolean }) =>
        s.balanced
          ? `every source row is in a split${also.length ? ` (and ${also.join(', ')})` : ''}, quarantined or removed with a reason`
          : 'ROWS DO NOT BALANCE: see the report',
    },
    async () => {
      const report = buildDataReport(context.config, context.steps);
      return {
        outputs: {
          json: await store.put(JSON.stringify(report, null, 2) + '\n', '.json', null),
          markdown: await store.put(renderDataReportMarkdown(report), '.md', null),
        },
        stats: {
          balanced:
            report.accounting.balanced && report.feedback.every((file) => file.balanced) && report.knowledge.every((file) => file.balanced),
        },
      };
    },
  );
}
