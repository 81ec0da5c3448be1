/**
 * The bundled synthetic dataset: electronics customer-support questions and answers about the
 * fictional catalog, with known amounts of planted noise for the data stages to find.
 *
 * Deterministic: the same (rows, seed) gives the same records and a byte-identical JSONL file. Every
 * clean row gets its own (product, topic, template, context) slot, so duplicates, near duplicates and
 * conflicts exist only where planted, and `noise` counts them exactly. Generation is linear in rows.
 */
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { composeAnswer, joinAnswer } from './answers';
import { catalog, factsByType, questionTypes, type Product, type ProductFact, type QuestionType } from './catalog';
import { addHtml, addOddUnicode, breakRow, contradictFact, nearDuplicateQuestion, pastedManual } from './noise';
import { composeQuestion, contextSlotCount, contextTier, questionTemplates } from './questions';
import { mulberry32, type Random } from '../lib/seeded-random';

/** One generated row. Loose on purpose: invalid rows break types, and missing-field rows lack a key. */
export interface SampleRecord {
  id: unknown;
  question: unknown;
  answer: unknown;
  category: unknown;
  question_type: unknown;
  product: unknown;
  fact: unknown;
}

/** How many rows of each kind of noise were planted. */
export interface PlantedNoise {
  emptyAnswer: number;
  missingField: number;
  wrongType: number;
  overLong: number;
  html: number;
  oddUnicode: number;
  exactDuplicates: number;
  nearDuplicates: number;
  conflicts: number;
}
export type NoiseKind = keyof PlantedNoise;

/** What a row is: clean or one planted kind of noise; copies name the 0-based row they copy. */
export interface RowLabel {
  kind: NoiseKind | 'clean';
  copyOf?: number;
}

/** Share of rows per noise kind; invalid rows (the first four) add up to 2%. */
export const noiseShares: Readonly<PlantedNoise> = {
  emptyAnswer: 0.006,
  missingField: 0.005,
  wrongType: 0.005,
  overLong: 0.004,
  html: 0.08,
  oddUnicode: 0.05,
  exactDuplicates: 0.03,
  nearDuplicates: 0.03,
  conflicts: 0.01,
};

const typeShares: Record<QuestionType, number> = {
  spec: 0.3,
  'how-to': 0.2,
  troubleshooting: 0.2,
  compatibility: 0.17,
  warranty: 0.13,
};

/**
 * The catalog in "store order": the first product of every category, then the second of every
 * category, and so on, so a store of N products spans as many categories as it can.
 */
const storeOrder: readonly Product[] = (() => {
  const byCategory = new Map<string, Product[]>();
  for (const product of catalog) byCategory.set(product.category, [...(byCategory.get(product.category) ?? []), product]);
  const order: Product[] = [];
  for (let rank = 0; order.length < catalog.length; rank++)
    for (const products of byCategory.values()) if (products[rank]) order.push(products[rank]!);
  return order;
})();

/** Products of the catalog a generated store sells. */
export const catalogSize = catalog.length;

/**
 * Hands out question slots (template x context sentence) per product fact without repeats, tier by
 * tier: plain questions first, then with one context sentence, then with two.
 */
class QuestionSlots {
  private readonly open = new Map<string, { tier: number; queue: number[] }>();
  constructor(private readonly random: Random) {}

  take(productIndex: number, fact: ProductFact): { template: string; context: number } | undefined {
    const templates = questionTemplates[fact.topic];
    const key = `${productIndex}/${fact.topic}`;
    let state = this.open.get(key);
    if (!state) this.open.set(key, (state = { tier: 0, queue: [] }));
    while (state.queue.length === 0 && state.tier <= 2) {
      for (let t = 0; t < templates.length; t++)
        for (let c = 0; c < contextSlotCount; c++) if (contextTier(c) === state.tier) state.queue.push(t * contextSlotCount + c);
      this.random.shuffle(state.queue);
      state.tier++;
    }
    const slot = state.queue.pop();
    if (slot === undefined) return undefined;
    return { template: templates[Math.floor(slot / contextSlotCount)]!, context: slot % contextSlotCount };
  }
}

function pickQuestionType(random: Random): QuestionType {
  let r = random.next();
  for (const type of questionTypes) if ((r -= typeShares[type]) < 0) return type;
  return 'spec';
}

/** Row kinds in file order: exact counts per kind, at seeded random positions. */
function planKinds(rows: number, random: Random): (NoiseKind | 'clean')[] {
  const plan: (NoiseKind | 'clean')[] = [];
  for (const kind of Object.keys(noiseShares) as NoiseKind[]) {
    for (let n = Math.round(rows * noiseShares[kind]); n > 0; n--) plan.push(kind);
  }
  while (plan.length < rows) plan.push('clean');
  return random.shuffle(plan.slice(0, rows));
}

interface Fresh {
  record: Record<string, unknown>;
  product: Product;
  fact: ProductFact;
  question: string;
  answer: ReturnType<typeof composeAnswer>;
}

/**
 * `products` (1 to the catalog size, all by default) limits the store to its first products in store
 * order: with fewer products each fact is asked about more often, which a small model trained for
 * minutes on a CPU can learn.
 */
export function generateLabelledSampleRecords(
  rows: number,
  seed: number,
  products = catalogSize,
): { records: Record<string, unknown>[]; labels: RowLabel[]; noise: PlantedNoise } {
  if (!Number.isInteger(rows) || rows < 0) throw new RangeError(`rows must be a whole number >= 0, got ${rows}`);
  if (!Number.isInteger(products) || products < 1 || products > catalogSize)
    throw new RangeError(`products must be a whole number from 1 to ${catalogSize}, got ${products}`);
  // Catalog order either way, so the full store is the same dataset with or without `products`.
  const sold = new Set(storeOrder.slice(0, products));
  const productFacts = catalog.filter((product) => sold.has(product)).map((product) => ({ product, facts: factsByType(product) }));
  const random = mulberry32(seed);
  const slots = new QuestionSlots(random);
  const records: Record<string, unknown>[] = [];
  const labels: RowLabel[] = [];
  const noise = Object.fromEntries(Object.keys(noiseShares).map((kind) => [kind, 0])) as unknown as PlantedNoise;
  const cleanRows: number[] = [];
  const cleanRowsWithNumbers: number[] = [];
  const copiedRows = new Set<number>();

  const freshRow = (id: string): Fresh => {
    let chosen: { productIndex: number; fact: ProductFact; slot: ReturnType<QuestionSlots['take']> } | undefined;
    // A fact whose slots are used up is skipped. There are about 790,000 slots, so questions only
    // start to repeat (unplanned) past roughly 800,000 rows.
    for (let attempt = 0; attempt < 20 && !chosen?.slot; attempt++) {
      const productIndex = random.int(productFacts.length);
      const fact = random.pick(productFacts[productIndex]!.facts[pickQuestionType(random)]);
      chosen = { productIndex, fact, slot: slots.take(productIndex, fact) };
    }
    const { productIndex, fact } = chosen!;
    const slot = chosen!.slot ?? { template: random.pick(questionTemplates[fact.topic]), context: random.int(contextSlotCount) };
    const product = productFacts[productIndex]!.product;
    const question = composeQuestion(random, slot.template, product.name, slot.context);
    const answer = composeAnswer(random, product.name, fact);
    const record = {
      id,
      question,
      answer: joinAnswer(answer),
      category: product.category,
      question_type: fact.type,
      product: product.name,
      fact: fact.fact,
    };
    return { record, product, fact, question, answer };
  };

  // Prefer sources not copied yet, so most planted groups are a pair.
  const pickSource = (pool: number[]): number | undefined => {
    if (pool.length === 0) return undefined;
    let source = random.pick(pool);
    for (let tries = 0; tries < 8 && copiedRows.has(source); tries++) source = random.pick(pool);
    return source;
  };

  const copyRow = (kind: NoiseKind, id: string): { record: Record<string, unknown>; copyOf: number } | undefined => {
    for (let tries = 0; tries < 8; tries++) {
      const copyOf = pickSource(kind === 'conflicts' ? cleanRowsWithNumbers : cleanRows);
      if (copyOf === undefined) return undefined;
      const source = records[copyOf]!;
      const record: Record<string, unknown> = { ...source, id };
      if (kind === 'nearDuplicates') {
        const question = nearDuplicateQuestion(random, source.question as string);
        if (question === undefined) continue;
        record.question = question;
      } else if (kind === 'conflicts') {
        const fact = source.fact as string;
        const other = contradictFact(random, fact);
        if (other === undefined) continue;
        record.answer = (source.answer as string).replace(fact, () => other);
        record.fact = other;
      }
      copiedRows.add(copyOf);
      return { record, copyOf };
    }
    return undefined;
  };

  const plan = planKinds(rows, random);
  const idWidth = Math.max(6, String(rows).length);
  for (let i = 0; i < rows; i++) {
    const id = `q-${String(i + 1).padStart(idWidth, '0')}`;
    let kind = plan[i]!;
    let row: { record: Record<string, unknown>; label: RowLabel } | undefined;
    if (kind === 'exactDuplicates' || kind === 'nearDuplicates' || kind === 'conflicts') {
      const copy = copyRow(kind, id);
      if (copy) row = { record: copy.record, label: { kind, copyOf: copy.copyOf } };
      else kind = 'clean'; // Nothing suitable earlier in the file yet (only near the start).
    }
    if (!row) {
      const fresh = freshRow(id);
      const record = fresh.record;
      if (kind === 'html') Object.assign(record, addHtml(random, fresh.question, fresh.answer));
      else if (kind === 'oddUnicode') Object.assign(record, addOddUnicode(random, fresh.question, fresh.answer));
      else if (kind === 'overLong') record.answer = pastedManual(random, fresh.product);
      else if (kind === 'emptyAnswer' || kind === 'missingField' || kind === 'wrongType') breakRow(random, kind, record);
      else if (kind === 'clean') {
        cleanRows.push(i);
        if (/\d/.test(fresh.fact.fact)) cleanRowsWithNumbers.push(i);
      }
      row = { record, label: { kind } };
    }
    if (kind !== 'clean') noise[kind]++;
    records.push(row.record);
    labels.push(row.label);
  }
  return { records, labels, noise };
}

export function generateSampleRecords(
  rows: number,
  seed: number,
  products = catalogSize,
): { records: Record<string, unknown>[]; noise: PlantedNoise } {
  const { records, noise } = generateLabelledSampleRecords(rows, seed, products);
  return { records, noise };
}

/** Writes the dataset as JSONL (one record per line) via a temp file and rename, so readers never see half a file. */
export async function writeSampleJsonl(path: string, rows: number, seed: number, products = catalogSize): Promise<PlantedNoise> {
  const { records, noise } = generateSampleRecords(rows, seed, products);
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.${process.pid}.tmp`;
  try {
    const file = await open(temp, 'w');
    try {
      // Written in chunks so a million rows never needs one giant string.
      for (let start = 0; start < records.length; start += 10_000) {
        await file.write(
          records
            .slice(start, start + 10_000)
            .map((r) => `${JSON.stringify(r)}\n`)
            .join(''),
        );
      }
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  return noise;
}
