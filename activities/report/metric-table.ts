/**
 * The metric table: one row per metric, one column per system (tuned, base, retrieval), the same
 * rows and decimals in the run report and on the command line.
 */
import { SYSTEMS, type SystemName } from '../../schemas/engine';
import type { MetricTable } from '../../schemas/manifests';
import type { Block, Cell } from './document';

interface MetricRow {
  metric: string;
  label: string;
  digits: number;
  /** Shown in the short table the command line prints. */
  headline: boolean;
}

export const METRIC_ROWS: readonly MetricRow[] = [
  { metric: 'rougeL', label: 'ROUGE-L F1', digits: 3, headline: true },
  { metric: 'rouge1', label: 'ROUGE-1 F1', digits: 3, headline: false },
  { metric: 'rouge2', label: 'ROUGE-2 F1', digits: 3, headline: false },
  { metric: 'bleu', label: 'BLEU (0-100)', digits: 2, headline: true },
  { metric: 'chrf', label: 'chrF (0-100)', digits: 2, headline: true },
  { metric: 'factualAccuracy', label: 'factual accuracy', digits: 3, headline: true },
  { metric: 'semanticSimilarity', label: 'semantic similarity', digits: 3, headline: true },
  { metric: 'semanticMatch', label: 'semantic matches (cos >= 0.6)', digits: 3, headline: false },
  { metric: 'questionEchoSimilarity', label: 'semantic similarity of the question itself', digits: 3, headline: true },
  { metric: 'rougeLLengthMatched', label: 'ROUGE-L at equal length', digits: 3, headline: true },
  { metric: 'semanticSimilarityLengthMatched', label: 'semantic similarity at equal length', digits: 3, headline: true },
  { metric: 'degeneration', label: 'answers in a loop', digits: 3, headline: true },
  { metric: 'distinct2', label: 'distinct word pairs', digits: 3, headline: false },
  { metric: 'predictionWordsMean', label: 'answer words, mean', digits: 1, headline: true },
  { metric: 'predictionWordsP90', label: 'answer words, p90', digits: 1, headline: false },
  { metric: 'perplexity', label: 'perplexity, general English', digits: 2, headline: true },
];

export const SYSTEM_LABEL: Record<SystemName, string> = {
  tuned: 'tuned',
  'tuned-grounded': 'tuned + grounding',
  base: 'base (untuned)',
  'base-grounded': 'base + grounding',
  retrieval: 'retrieval',
};

/** A measured value with a fixed number of decimals (so 0 reads 0.000 beside 0.412); null stays null. */
export const fixedCell = (value: number | null | undefined, digits: number): Cell =>
  value === null || value === undefined ? null : value.toFixed(digits);

/** The table as a report block; rows nobody measured are left out. `headline`: only the rows the command line shows. */
export function metricTableBlock(metrics: MetricTable, options: { headline?: boolean } = {}): Extract<Block, { kind: 'table' }> {
  const systems = SYSTEMS.filter((s) => metrics[s]);
  const rows = METRIC_ROWS.filter((r) => !options.headline || r.headline).filter((r) =>
    systems.some((s) => typeof metrics[s]?.[r.metric] === 'number'),
  );
  return {
    kind: 'table',
    header: ['metric', ...systems.map((s) => SYSTEM_LABEL[s])],
    numeric: [false, ...systems.map(() => true)],
    rows: rows.map((r) => [r.label, ...systems.map((s) => fixedCell(metrics[s]?.[r.metric], r.digits))]),
  };
}
