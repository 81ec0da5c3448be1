/**
 * The fictional electronics catalog behind the synthetic support dataset. Every answer the generator
 * writes is taken from a product here, so each question has one checkable fact.
 *
 * Products are written as `ProductEntry` (specs, warranty, compatibility and a few hardware details)
 * in the `catalog-*.ts` files; their how-to and troubleshooting steps come from the category's
 * procedures in `procedures.ts`, filled in with the product's own buttons, app and timings.
 */
import { audioProducts } from './catalog-audio';
import { computingProducts } from './catalog-computing';
import { screenProducts } from './catalog-screens';
import { supportFor } from './procedures';

export type Category =
  | 'headphones'
  | 'earbuds'
  | 'speakers'
  | 'smartwatches'
  | 'tvs'
  | 'monitors'
  | 'phones'
  | 'tablets'
  | 'laptops'
  | 'keyboards'
  | 'routers'
  | 'cameras';

export type QuestionType = 'spec' | 'how-to' | 'troubleshooting' | 'warranty' | 'compatibility';
export const questionTypes: readonly QuestionType[] = ['spec', 'how-to', 'troubleshooting', 'warranty', 'compatibility'];

export type SpecTopic =
  'batteryLife' | 'screenSize' | 'weight' | 'waterResistance' | 'maxResolution' | 'refreshRate' | 'wifi' | 'charging' | 'storage' | 'ports';
export type CompatibilityTopic = 'platforms' | 'bluetooth' | 'codecs' | 'streaming' | 'mounts';
export type HowToTopic = 'reset' | 'pair' | 'updateFirmware' | 'factoryReset';
export type Symptom =
  'wontTurnOn' | 'wontCharge' | 'noSound' | 'bluetoothDrops' | 'wifiDrops' | 'screenFlicker' | 'overheating' | 'batteryDrain';
export type WarrantyTopic = 'warrantyLength' | 'warrantyCoverage';
export type Topic = SpecTopic | CompatibilityTopic | HowToTopic | Symptom | WarrantyTopic;

/** The product-specific details that the category's procedures are written around. */
export interface Controls {
  /** Companion app (or settings screen owner) used for firmware updates, e.g. 'Aurora Sound'. */
  app: string;
  /** Buttons held together for a restart, e.g. 'power and volume-down buttons'. */
  resetKeys: string;
  /** Seconds to hold `resetKeys` for a restart. */
  resetSeconds: number;
  /** Seconds to hold `resetKeys` (or the reset pinhole) for a factory reset; longer than a restart. */
  factorySeconds: number;
  /** Indicator light colour that confirms a reset or pairing mode, e.g. 'amber'. */
  light: string;
  /** Minutes on the charger before a fully drained unit responds again. */
  chargeMinutes: number;
}

/** A product as written in the catalog files. Values are display text that answers quote verbatim. */
export interface ProductEntry {
  /** Fictional brand, product line and model code, e.g. 'Aurora Pulse X3'. No two products share a brand. */
  name: string;
  category: Category;
  specs: Partial<Record<SpecTopic, string>>;
  warranty: { months: number; covers: string };
  compatibility: Partial<Record<CompatibilityTopic, string>>;
  controls: Controls;
}

/** A step-by-step instruction; `fact` is the key step and appears verbatim in `steps`. */
export interface Procedure {
  steps: string;
  fact: string;
}

export interface Product extends ProductEntry {
  howTo: Partial<Record<HowToTopic, Procedure>>;
  troubleshooting: Partial<Record<Symptom, Procedure>>;
}

/** One thing a customer can ask about a product, with the fact the answer must quote. */
export interface ProductFact {
  type: QuestionType;
  topic: Topic;
  fact: string;
  /** Full steps for how-to and troubleshooting answers (they contain `fact`); absent otherwise. */
  steps?: string;
}

export const catalog: readonly Product[] = [...audioProducts, ...screenProducts, ...computingProducts].map((entry) => ({
  ...entry,
  ...supportFor(entry),
}));

/** Every fact of a product, grouped by question type, in a fixed order (the generator relies on it). */
export function factsByType(product: Product): Record<QuestionType, ProductFact[]> {
  const entries = <K extends string, V>(record: Partial<Record<K, V>>) => Object.entries(record) as [K, V][];
  return {
    spec: entries(product.specs).map(([topic, fact]) => ({ type: 'spec', topic, fact })),
    'how-to': entries(product.howTo).map(([topic, p]) => ({ type: 'how-to', topic, fact: p.fact, steps: p.steps })),
    troubleshooting: entries(product.troubleshooting).map(([topic, p]) => ({
      type: 'troubleshooting',
      topic,
      fact: p.fact,
      steps: p.steps,
    })),
    warranty: [
      { type: 'warranty', topic: 'warrantyLength', fact: `${product.warranty.months} months` },
      { type: 'warranty', topic: 'warrantyCoverage', fact: product.warranty.covers },
    ],
    compatibility: entries(product.compatibility).map(([topic, fact]) => ({ type: 'compatibility', topic, fact })),
  };
}
