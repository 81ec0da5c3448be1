/**
 * The promotion gate: the served system's metrics (the tuned model, grounded when training was)
 * against the thresholds in `gates:`. Pure and
 * deterministic, so it runs inside the workflow and its verdict is part of the history.
 */
import type { Gate, MetricName } from '../schemas/config';
import type { SystemName } from '../schemas/engine';
import type { GateResult, GateVerdict, MetricTable } from '../schemas/manifests';

/** Metrics where a smaller value is the better one; every other metric is better when larger. */
export const LOWER_IS_BETTER: ReadonlySet<MetricName> = new Set(['perplexity', 'degeneration']);

const formatValue = (value: number) => (Number.isInteger(value) ? String(value) : value.toPrecision(4).replace(/\.?0+$/, ''));

/** What the gate asks for, in words, e.g. `rougeL >= retrieval + 0.02 (0.4312)`. */
function describe(gate: Gate, threshold: number | null): string {
  if (gate.relativeTo) {
    const sign = LOWER_IS_BETTER.has(gate.metric) ? '<=' : '>=';
    // The threshold moves toward "better" by the margin: down for perplexity, up for the rest.
    const offset = LOWER_IS_BETTER.has(gate.metric) ? -gate.margin : gate.margin;
    const shift = offset === 0 ? '' : offset > 0 ? ` + ${offset}` : ` - ${-offset}`;
    const resolved = threshold === null ? '' : ` (${formatValue(threshold)})`;
    return `${gate.metric} ${sign} ${gate.relativeTo}${shift}${resolved}`;
  }
  const bounds = [gate.min !== undefined ? `>= ${gate.min}` : '', gate.max !== undefined ? `<= ${gate.max}` : ''].filter(Boolean);
  return `${gate.metric} ${bounds.join(' and ')}`;
}

/**
 * Checks one gate; a metric nobody measured fails it, naming what is missing. Satisfaction comes
 * from human review after this gate, so its gates stay `pending` here.
 */
export function checkGate(gate: Gate, metrics: MetricTable, served: SystemName = 'tuned'): GateResult {
  if (gate.metric === 'satisfaction' && metrics[served]?.satisfaction == null)
    return { gate, rule: describe(gate, null), value: null, threshold: null, status: 'pending' };
  const value = metrics[served]?.[gate.metric] ?? null;
  let threshold: number | null = null;
  let passed: boolean;
  let missing: string | undefined;
  if (gate.relativeTo) {
    const baseline = metrics[gate.relativeTo]?.[gate.metric] ?? null;
    if (baseline !== null) threshold = LOWER_IS_BETTER.has(gate.metric) ? baseline - gate.margin : baseline + gate.margin;
    else missing = `the ${gate.relativeTo} baseline has no ${gate.metric}`;
    passed = value !== null && threshold !== null && (LOWER_IS_BETTER.has(gate.metric) ? value <= threshold : value >= threshold);
  } else {
    passed = value !== null && (gate.min === undefined || value >= gate.min) && (gate.max === undefined || value <= gate.max);
  }
  if (value === null) missing = `the ${served} system has no ${gate.metric}`;
  const rule = describe(gate, threshold);
  const reason = passed ? undefined : missing ? `${rule}: ${missing}` : `${rule}: ${served} ${formatValue(value!)}`;
  return { gate, rule, value, threshold, status: passed ? 'passed' : 'failed', ...(reason ? { reason } : {}) };
}

/**
 * Every gate checked. The model is a promotion candidate only when every gate passed: a failed gate
 * means not promoted, and a gate that human review has not decided yet (satisfaction) means
 * awaiting review, never a candidate.
 */
export function checkGates(gates: Gate[], metrics: MetricTable, served: SystemName = 'tuned'): GateVerdict {
  const results = gates.map((gate) => checkGate(gate, metrics, served));
  const verdict = results.some((r) => r.status === 'failed')
    ? 'not-promoted'
    : results.some((r) => r.status === 'pending')
      ? 'awaiting-review'
      : 'candidate';
  return { verdict, system: served, results, reasons: results.flatMap((r) => (r.reason ? [r.reason] : [])) };
}
