/**
 * The data-stage activities (cpu task queue). Each takes small manifests, does its work through the
 * step cache and returns a StepResult: artifact references and counts, never the rows themselves.
 * User errors (bad config, bad data) become non-retryable failures with a message a person can act on.
 */
import { access, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ApplicationFailure } from '@temporalio/activity';
import type { PipelineConfig } from '../schemas/config';
import type { ArtifactRef, StepResult } from '../schemas/manifests';
import type { GroupedRow, QaRow } from '../schemas/rows';
import { checkConfig, formatProblems } from '../schemas/validate';
import { ArtifactStore, sha256File, toJsonl } from './artifacts';
import { readRows, writeRows } from './data/arrow-io';
import { cleanRows } from './data/clean';
import { deduplicate } from './data/dedup';
import { DatasetError, checkInvalidShare, validateRecords } from './data/ingest';
import { UnsupportedFormatError, detectFormat, readRecords } from './data/readers';
import { buildDataReport, renderDataReportMarkdown } from './data/report';
import { writeSampleJsonl } from './data/sample/generate';
import { splitRows } from './data/split';
import { beat, runCachedStep } from './steps';

export { publishRunFolder } from './run-folder';

export const ErrorTypes = { config: 'ConfigError', data: 'DataError' } as const;

export interface DataStepInput {
  config: PipelineConfig;
  configDir: string;
  noCache?: boolean;
}

export function storeFor(input: Pick<DataStepInput, 'config' | 'configDir'>): ArtifactStore {
  return new ArtifactStore(resolve(input.configDir, input.config.storage.artifacts));
}

/**
 * `model.base` as the engine must see it: a local folder written relative to the YAML file becomes
 * absolute (the engine runs in the project folder); `default` and hub ids pass through.
 */
export function baseModelFor(input: Pick<DataStepInput, 'config' | 'configDir'>): string {
  const { base } = input.config.model;
  return /^[./~]/.test(base) ? resolve(input.configDir, base.replace(/^~(?=\/|$)/, process.env.HOME ?? '~')) : base;
}

/** Turns known user errors into non-retryable failures; anything else stays retryable. */
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

/** First step: the same checks as `tuneline validate`, so a client that skips the CLI cannot skip them. */
export async function validatePipelineConfig(input: { config: unknown; configDir: string }): Promise<PipelineConfig> {
  const check = checkConfig(input.config);
  if (!check.ok) throw ApplicationFailure.nonRetryable(formatProblems(check.problems), ErrorTypes.config);
  return check.config;
}

export interface SourceStats {
  kind: 'sample' | 'file';
  path: string;
  format: string;
}

/** The sample set is generated into the store (cached by rows, seed, products and code); a file is hashed in place. */
export async function prepareSource(input: DataStepInput): Promise<StepResult<SourceStats>> {
  return asUserErrors(async () => {
    const store = storeFor(input);
    const { data } = input.config;
    if (data.sample) {
      const sample = data.sample;
      return runCachedStep(store, { step: 'source', config: { sample }, inputs: [], noCache: input.noCache }, async () => {
        const tmp = await store.tempPath();
        await writeSampleJsonl(tmp, sample.rows, sample.seed, sample.products);
        const ref = await store.putFile(tmp, '.jsonl', sample.rows);
        return { outputs: { source: ref }, stats: { kind: 'sample', path: ref.uri, format: 'jsonl' } };
      });
    }
    const path = resolve(input.configDir, data.path!);
    try {
      await access(path);
    } catch {
      throw new DatasetError(
        `data file not found: ${path}. Check data.path in temporal.yaml (relative paths start at the YAML file's folder).`,
      );
    }
    const format = detectFormat(path, data.format);
    const started = performance.now();
    const sha256 = await sha256File(path);
    const ref: ArtifactRef = { uri: pathToFileURL(path).href, sha256, bytes: (await stat(path)).size, rows: null };
    return {
      step: 'source',
      key: sha256,
      reused: false,
      outputs: { source: ref },
      stats: { kind: 'file', path, format },
      seconds: Math.round(performance.now() - started) / 1000,
    };
  });
}

export async function ingestData(input: DataStepInput & { source: StepResult<SourceStats> }) {
  return asUserErrors(async () => {
    const store = storeFor(input);
    const { data } = input.config;
    const source = input.source.outputs.source!;
    const config = {
      columns: data.columns,
      format: data.format,
      maxRows: data.maxRows,
      maxQ: data.maxQuestionChars,
      maxA: data.maxAnswerChars,
      maxBad: data.maxInvalidFraction,
    };
    return runCachedStep(store, { step: 'ingest', config, inputs: [source], noCache: input.noCache }, async () => {
      const path = fileURLToPath(source.uri);
      const format = detectFormat(path, input.source.stats.kind === 'sample' ? 'jsonl' : data.format);
      const records = await readRecords(path, format, data.maxRows);
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
    });
  });
}

export async function cleanData(input: DataStepInput & { rows: ArtifactRef }) {
  const store = storeFor(input);
  return runCachedStep(store, { step: 'clean', config: input.config.clean, inputs: [input.rows], noCache: input.noCache }, async () => {
    const result = cleanRows(await readRows<QaRow>(input.rows), input.config.clean);
    return {
      outputs: {
        rows: await writeRows(store, result.rows),
        removed: await store.put(toJsonl(result.removedRows), '.jsonl', result.removedRows.length),
      },
      stats: result.stats,
    };
  });
}

export async function dedupData(input: DataStepInput & { rows: ArtifactRef }) {
  const store = storeFor(input);
  return runCachedStep(store, { step: 'dedup', config: input.config.dedup, inputs: [input.rows], noCache: input.noCache }, async () => {
    const result = deduplicate(await readRows<QaRow>(input.rows), input.config.dedup);
    return {
      outputs: {
        rows: await writeRows(store, result.rows),
        removed: await store.put(toJsonl(result.removedRows), '.jsonl', result.removedRows.length),
        conflicts: await store.put(toJsonl(result.conflicts), '.jsonl', result.conflicts.length),
      },
      stats: result.stats,
    };
  });
}

export async function splitData(input: DataStepInput & { rows: ArtifactRef }) {
  const store = storeFor(input);
  return runCachedStep(store, { step: 'split', config: input.config.split, inputs: [input.rows], noCache: input.noCache }, async () => {
    const { splits, stats } = splitRows(await readRows<GroupedRow>(input.rows), input.config.split);
    return {
      outputs: {
        train: await writeRows(store, splits.train),
        validation: await writeRows(store, splits.validation),
        test: await writeRows(store, splits.test),
      },
      stats,
    };
  });
}

export async function writeDataReport(input: DataStepInput & { steps: StepResult<object>[] }) {
  const store = storeFor(input);
  const inputs = input.steps.flatMap((s) => Object.values(s.outputs));
  return runCachedStep(store, { step: 'report', config: { name: input.config.name }, inputs, noCache: input.noCache }, async () => {
    const report = buildDataReport(input.config, input.steps);
    return {
      outputs: {
        json: await store.put(JSON.stringify(report, null, 2) + '\n', '.json', null),
        markdown: await store.put(renderDataReportMarkdown(report), '.md', null),
      },
      stats: { balanced: report.accounting.balanced },
    };
  });
}
