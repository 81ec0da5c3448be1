import { describe, expect, it } from 'vitest';
import { drawEvaluationRows } from '../../activities/evaluate';
import { formatMetricTable } from '../../cli/commands/run';

const rows = Array.from({ length: 100 }, (_, n) => ({ id: `row-${n}` }));

describe('evaluation set', () => {
  it('is a seeded draw of ids kept in file order, the same every time', () => {
    const drawn = drawEvaluationRows(rows, 10, 42);
    expect(drawn).toHaveLength(10);
    expect(drawEvaluationRows(rows, 10, 42)).toEqual(drawn);
    expect(drawn.map((r) => Number(r.id.slice(4)))).toEqual([...drawn.map((r) => Number(r.id.slice(4)))].sort((a, b) => a - b));
    expect(drawEvaluationRows(rows, 10, 7)).not.toEqual(drawn);
    // A larger draw contains the smaller one: raising maxTestRows adds rows, it does not swap them.
    expect(drawEvaluationRows(rows, 20, 42)).toEqual(expect.arrayContaining(drawn));
    // Independent of input order.
    expect(
      drawEvaluationRows([...rows].reverse(), 10, 42)
        .map((r) => r.id)
        .sort(),
    ).toEqual(drawn.map((r) => r.id).sort());
  });

  it('takes every row without a limit or with one above the row count', () => {
    expect(drawEvaluationRows(rows, undefined, 42)).toBe(rows);
    expect(drawEvaluationRows(rows, 500, 42)).toBe(rows);
  });
});

describe('printed metric table', () => {
  it('has a column per system and a row per measured metric', () => {
    const table = formatMetricTable({
      tuned: { rougeL: 0.4123, factualAccuracy: 0.25, bleu: 12.345, perplexity: 20.5 },
      base: { rougeL: 0.1, factualAccuracy: 0, bleu: 1.2, perplexity: 19.25 },
      retrieval: { rougeL: 0.3, factualAccuracy: 0.1, bleu: 9 },
    });
    expect(table.split('\n')).toEqual([
      '  metric           tuned   base  retrieval',
      '  rougeL           0.412  0.100      0.300',
      '  factualAccuracy  0.250  0.000      0.100',
      '  bleu             12.35   1.20       9.00',
      '  perplexity       20.50  19.25          -',
    ]);
  });
});
