/**
 * The synthetic support dataset: deterministic, the asked size, every clean fact quotable, and
 * exactly the planted noise (no accidental duplicates among clean rows).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { catalog, factsByType, questionTypes } from '../../sample-data/catalog';
import {
  catalogSize,
  generateLabelledSampleRecords,
  generateSampleRecords,
  writeSampleJsonl,
  type PlantedNoise,
} from '../../sample-data/generate';
import { questionTemplates } from '../../sample-data/questions';

/** Character 3-grams of lower-cased, whitespace-collapsed text, compared by Jaccard: the dedup stage's measure. */
function grams(text: string): Set<string> {
  const s = text.toLowerCase().replace(/\s+/g, ' ').trim();
  return new Set(Array.from({ length: Math.max(0, s.length - 2) }, (_, i) => s.slice(i, i + 3)));
}
function jaccard(a: Set<string>, b: Set<string>): number {
  let shared = 0;
  for (const g of a) if (b.has(g)) shared++;
  return shared / (a.size + b.size - shared);
}
const similarity = (a: string, b: string) => jaccard(grams(a), grams(b));

/** Pairs of texts at or above the near-duplicate threshold, each group compared within itself. */
function nearPairs(groups: Iterable<string[]>): string[] {
  const found: string[] = [];
  for (const texts of groups) {
    const sets = texts.map(grams);
    for (let i = 0; i < texts.length; i++)
      for (let j = i + 1; j < texts.length; j++) if (jaccard(sets[i]!, sets[j]!) >= 0.8) found.push(`${texts[i]} / ${texts[j]}`);
  }
  return found;
}

const entities: Record<string, string> = { amp: '&', nbsp: '\u00a0', quot: '"', apos: "'", lt: '<', gt: '>' };
const stripMarkup = (html: string) =>
  html
    .replace(/<[^>]*>/g, '')
    .replace(/&(#\d+|[a-z]+);/g, (m, e: string) => (e.startsWith('#') ? String.fromCodePoint(Number(e.slice(1))) : (entities[e] ?? m)));

/** What ingest accepts: text question and answer, a non-blank answer of at most 4,000 characters. */
const isValid = (r: Record<string, unknown>) =>
  typeof r.question === 'string' && typeof r.answer === 'string' && r.answer.trim() !== '' && r.answer.length <= 4000;

const invalidKinds = ['emptyAnswer', 'missingField', 'wrongType', 'overLong'] as const;

const seed42 = generateLabelledSampleRecords(10_000, 42);

describe('sample catalog', () => {
  it('has 40 to 60 uniquely named products in at least 8 categories, each with facts of every question type', () => {
    expect(catalog.length).toBeGreaterThanOrEqual(40);
    expect(catalog.length).toBeLessThanOrEqual(60);
    expect(new Set(catalog.map((p) => p.name)).size).toBe(catalog.length);
    expect(new Set(catalog.map((p) => p.category)).size).toBeGreaterThanOrEqual(8);
    for (const product of catalog) {
      const facts = factsByType(product);
      for (const type of questionTypes) expect(facts[type].length, `${product.name} ${type}`).toBeGreaterThan(0);
      for (const fact of Object.values(facts).flat()) {
        expect(fact.fact, `${product.name} ${fact.topic}`).not.toMatch(/[<>&"]/);
        if (fact.steps) expect(fact.steps).toContain(fact.fact);
      }
    }
  });

  it('makes the same question about two different products no near duplicate', () => {
    const perTemplate = Object.values(questionTemplates)
      .flat()
      .map((template) => catalog.map((p) => template.replaceAll('{p}', p.name)));
    expect(nearPairs(perTemplate)).toEqual([]);
  });
});

describe('generateSampleRecords', () => {
  it('is deterministic by seed', () => {
    expect(generateSampleRecords(2_000, 42)).toEqual(generateSampleRecords(2_000, 42));
    expect(generateSampleRecords(2_000, 43).records).not.toEqual(generateSampleRecords(2_000, 42).records);
  });

  it('pins the first row and the noise counts for seed 42, so silent changes show', () => {
    expect(seed42.records[0]).toEqual({
      id: 'q-000001',
      question: 'Is the Papyra Reader 10 using the latest wireless standard?',
      answer: 'Good question. The Papyra Reader 10 supports Wi-Fi 5. Let me know if there is anything else I can help with.',
      category: 'tablets',
      question_type: 'spec',
      product: 'Papyra Reader 10',
      fact: 'Wi-Fi 5',
    });
    expect(seed42.noise).toEqual<PlantedNoise>({
      emptyAnswer: 60,
      missingField: 50,
      wrongType: 50,
      overLong: 40,
      html: 800,
      oddUnicode: 500,
      exactDuplicates: 300,
      nearDuplicates: 300,
      conflicts: 100,
    });
  });

  it('sells only the first N products across categories when asked, the full catalog by default', () => {
    const small = generateLabelledSampleRecords(1_000, 42, 3);
    const sold = new Set(small.records.filter((_, i) => small.labels[i]!.kind === 'clean').map((r) => r.product));
    expect(sold.size).toBe(3);
    const categories = new Set(catalog.filter((p) => sold.has(p.name)).map((p) => p.category));
    expect(categories.size).toBe(3);
    expect(generateLabelledSampleRecords(1_000, 42, 3)).toEqual(small);
    expect(generateSampleRecords(500, 42, catalogSize)).toEqual(generateSampleRecords(500, 42));
    for (const bad of [0, catalogSize + 1, 2.5]) expect(() => generateSampleRecords(10, 42, bad)).toThrow(/products must be/);
  });

  it.each([1, 10, 137, 10_000])('returns exactly %i rows with unique ids', (rows) => {
    const { records } = rows === 10_000 ? seed42 : generateSampleRecords(rows, 7);
    expect(records).toHaveLength(rows);
    expect(new Set(records.map((r) => r.id)).size).toBe(rows);
  });

  it('plants every kind of noise at 10,000 rows, counted exactly, with under 5% invalid rows', () => {
    const { records, labels, noise } = seed42;
    for (const [kind, count] of Object.entries(noise)) {
      expect(count, kind).toBeGreaterThan(0);
      expect(labels.filter((l) => l.kind === kind).length, kind).toBe(count);
    }
    const invalid = records.filter((r) => !isValid(r)).length;
    expect(invalid).toBe(invalidKinds.reduce((sum, kind) => sum + noise[kind], 0));
    expect(invalid / records.length).toBeLessThan(0.05);
    // Noise is spread through the file, not appended at the end.
    const firstHalf = labels.slice(0, 5_000).filter((l) => l.kind !== 'clean').length;
    const secondHalf = labels.slice(5_000).filter((l) => l.kind !== 'clean').length;
    expect(Math.abs(firstHalf - secondHalf)).toBeLessThan(0.2 * (firstHalf + secondHalf));
  });

  it('puts each valid row’s fact verbatim in its answer once tags and entities are stripped', () => {
    for (const record of seed42.records.filter(isValid)) {
      expect(stripMarkup(record.answer as string), String(record.id)).toContain(record.fact);
    }
  });

  it('makes HTML and odd-Unicode rows actually contain markup and odd characters', () => {
    const { records, labels } = seed42;
    const ofKind = (kind: string) => records.filter((_, i) => labels[i]!.kind === kind);
    for (const r of ofKind('html')) expect(String(r.answer)).toMatch(/<\w+|&\w+;|&#\d+;/);
    const odd =
      /[\u0000-\u0008\u000b\u001b\u00a0\u200b-\u200d\u2019\u201c\u202f\ufeff\uff01-\uff5e\u0300-\u036f\t]|\p{Extended_Pictographic}| {2}/u;
    for (const r of ofKind('oddUnicode')) expect(`${r.question}${r.answer}`).toMatch(odd);
  });

  it('copies only earlier clean rows: exact duplicates, near duplicates and conflicts', () => {
    const { records, labels } = seed42;
    const norm = (t: unknown) =>
      String(t)
        .toLowerCase()
        .replace(/[^\p{L}\p{N}]+/gu, ' ')
        .trim();
    labels.forEach((label, i) => {
      if (label.copyOf === undefined) return;
      expect(label.copyOf).toBeLessThan(i);
      expect(labels[label.copyOf]!.kind).toBe('clean');
      const { id: _copyId, ...copy } = records[i]!;
      const { id: _sourceId, ...source } = records[label.copyOf]!;
      if (label.kind === 'exactDuplicates') expect(copy).toEqual(source);
      if (label.kind === 'nearDuplicates') {
        expect({ ...copy, question: '' }).toEqual({ ...source, question: '' });
        expect(norm(copy.question)).not.toBe(norm(source.question));
        expect(similarity(String(copy.question), String(source.question))).toBeGreaterThanOrEqual(0.8);
      }
      if (label.kind === 'conflicts') {
        expect(copy.question).toBe(source.question);
        expect(copy.product).toBe(source.product);
        expect(copy.answer).not.toBe(source.answer);
        expect(copy.answer).not.toContain(source.fact);
      }
    });
  });

  it('leaves no unplanned near duplicates among clean questions, within a product or across products', () => {
    const clean = seed42.records.filter((_, i) => seed42.labels[i]!.kind === 'clean');
    const group = (key: (r: Record<string, unknown>) => string) => {
      const groups = new Map<string, string[]>();
      for (const r of clean) groups.set(key(r), [...(groups.get(key(r)) ?? []), r.question as string]);
      return groups.values();
    };
    expect(nearPairs(group((r) => String(r.product)))).toEqual([]);
    // Across products, the close calls are the same wording about another product: compare those.
    const wording = (r: Record<string, unknown>) => String(r.question).toLowerCase().replace(String(r.product).toLowerCase(), '{p}');
    expect(nearPairs(group(wording))).toEqual([]);
  });

  it('varies the wording: 20+ question openings, all five question types, 8+ categories', () => {
    const clean = seed42.records.filter((_, i) => seed42.labels[i]!.kind === 'clean');
    const openings = new Set(clean.map((r) => String(r.question).toLowerCase().split(/\s+/).slice(0, 3).join(' ')));
    expect(openings.size).toBeGreaterThanOrEqual(20);
    expect(new Set(clean.map((r) => r.question_type))).toEqual(new Set(questionTypes));
    expect(new Set(clean.map((r) => r.category)).size).toBeGreaterThanOrEqual(8);
    for (const type of questionTypes) {
      const ofType = clean.filter((r) => r.question_type === type);
      expect(new Set(ofType.map((r) => String(r.question).split(' ').slice(0, 3).join(' '))).size, type).toBeGreaterThanOrEqual(10);
    }
  });

  it('scales linearly: 100,000 rows in one pass', () => {
    const { records, noise } = generateSampleRecords(100_000, 1);
    expect(records).toHaveLength(100_000);
    expect(noise.html).toBe(8_000);
  }, 60_000);
});

describe('writeSampleJsonl', () => {
  it('writes one JSON record per line, byte-identical for the same seed, and leaves no temp file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tuneline-sample-'));
    try {
      const first = join(dir, 'nested', 'a.jsonl');
      const second = join(dir, 'b.jsonl');
      const noise = await writeSampleJsonl(first, 500, 42);
      await writeSampleJsonl(second, 500, 42);
      const text = await readFile(first, 'utf8');
      expect(text).toBe(await readFile(second, 'utf8'));
      const lines = text.split('\n');
      expect(lines.pop()).toBe('');
      expect(lines.map((l) => JSON.parse(l))).toEqual(generateSampleRecords(500, 42).records);
      expect(noise).toEqual(generateSampleRecords(500, 42).noise);
      expect(await readdir(join(dir, 'nested'))).toEqual(['a.jsonl']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
