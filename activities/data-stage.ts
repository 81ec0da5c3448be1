/**
 * The data-stage activities (cpu task queue): source, ingest, clean, dedup, split, report. Each takes
 * small manifests, does its work through the step cache and returns a StepResult: artifact
 * references, counts and its own summary line, never the rows themselves. User errors (bad data)
 * become non-retryable failures with a message a person can act on.
 */
import { copyFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ArtifactRef, StepContext, StepResult } from '../schemas/manifests';
import type { GroupedRow, QaRow } from '../schemas/rows';
import { writeSampleJsonl } from '../sample-data/generate';
import { sha256File, toJsonl } from './artifacts';
import { codeVersion } from './code-version';
import { ApplicationFailure } from '@temporalio/activity';
import { ErrorTypes } from '../schemas/errors';
import { storeFor } from './context';
import { readRows, writeRows } from './data/arrow-io';
import { cleanRows, type CleanStats } from './data/clean';
import { deduplicate, type DedupStats } from './data/dedup';
import { DatasetError, checkInvalidShare, validateRecords, type IngestStats } from './data/ingest';
import { UnsupportedFormatError, detectFormat, readRecords } from './data/readers';
import { buildDataReport, renderDataReportMarkdown, type DataStageSteps, type SourceStats } from './data/report';
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
        const path = fileURLToPath(source.uri);
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
      const result = cleanRows(await readRows<QaRow>(context.rows), context.config.clean);
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
      const result = deduplicate(await readRows<QaRow>(context.rows), context.config.dedup);
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
      const { splits, stats } = splitRows(await readRows<GroupedRow>(context.rows), context.config.split);
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

export async function writeDataReport(context: StepContext & { steps: DataStageSteps }) {
  const store = storeFor(context);
  const { source, ingest, clean, dedup, split } = context.steps;
  const inputs = [source, ingest, clean, dedup, split].flatMap((s) => Object.values<ArtifactRef>(s.outputs));
  return runCachedStep(
    store,
    {
      step: 'report',
      config: { name: context.config.name },
      inputs,
      code: code(),
      noCache: context.noCache,
      summarize: (s: { balanced: boolean }) =>
        s.balanced ? 'every source row is in a split, quarantined or removed with a reason' : 'ROWS DO NOT BALANCE: see the report',
    },
    async () => {
      const report = buildDataReport(context.config, context.steps);
      return {
        outputs: {
          json: await store.put(JSON.stringify(report, null, 2) + '\n', '.json', null),
          markdown: await store.put(renderDataReportMarkdown(report), '.md', null),
        },
        stats: { balanced: report.accounting.balanced },
      };
    },
  );
}
