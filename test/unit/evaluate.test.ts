import { describe, expect, it } from 'vitest';
import { renderTextTable } from '../../activities/report/document';
import { metricTableBlock } from '../../activities/report/metric-table';
import { drawEvaluationRows } from '../../activities/evaluation/eval-set';

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

describe('metric table', () => {
  const metrics = {
    tuned: { rougeL: 0.4123, rouge2: 0.2, factualAccuracy: 0.25, bleu: 12.345, perplexity: 20.5 },
    base: { rougeL: 0.1, rouge2: 0.05, factualAccuracy: 0, bleu: 1.2, perplexity: 19.25 },
    retrieval: { rougeL: 0.3, rouge2: 0.1, factualAccuracy: 0.1, bleu: 9 },
  };

  it('prints a column per system and a row per measured headline metric, aligned', () => {
    expect(renderTextTable(metricTableBlock(metrics, { headline: true })).split('\n')).toEqual([
      '  metric                       tuned  base (untuned)  retrieval',
      '  ROUGE-L F1                   0.412           0.100      0.300',
      '  BLEU (0-100)                 12.35            1.20       9.00',
      '  factual accuracy             0.250           0.000      0.100',
      '  perplexity, general English  20.50           19.25          -',
    ]);
  });

  it('is the same table in the report, with every measured metric', () => {
    const table = metricTableBlock(metrics);
    expect(table.rows.map((row) => row[0])).toEqual([
      'ROUGE-L F1',
      'ROUGE-2 F1',
      'BLEU (0-100)',
      'factual accuracy',
      'perplexity, general English',
    ]);
    expect(table.rows[1]).toEqual(['ROUGE-2 F1', '0.200', '0.050', '0.100']);
  });
});
