/**
 * The config reference (`docs/config.md`), generated from the pipeline's JSON Schema so the
 * descriptions and defaults written in `schemas/config.ts` are the only copy.
 */
import { z } from 'zod';
import { PipelineConfig } from './config';

interface JsonSchema {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  pattern?: string;
  minimum?: number;
  maximum?: number;
}

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => `\`${JSON.stringify(v)}\``).join(' \\| ');
  if (s.anyOf) return s.anyOf.map(typeOf).join(' \\| ');
  if (s.type === 'array' && s.items) return `list of ${typeOf(s.items)}`;
  // zod marks every integer with the safe-integer range; only real limits are worth showing.
  const real = (v: number | undefined) => v !== undefined && Math.abs(v) < 1e12;
  const bounds = [real(s.minimum) ? `≥ ${s.minimum}` : '', real(s.maximum) ? `≤ ${s.maximum}` : ''].filter(Boolean).join(', ');
  return `${Array.isArray(s.type) ? s.type.join(' \\| ') : (s.type ?? 'any')}${bounds ? ` (${bounds})` : ''}`;
}

function rows(schema: JsonSchema, prefix: string, out: string[]): void {
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    const isObject = prop.type === 'object' && prop.properties;
    const isObjectList = prop.type === 'array' && prop.items?.properties;
    const defaultText = prop.default === undefined || isObject ? '' : `\`${JSON.stringify(prop.default)}\``;
    out.push(
      `| \`${path}\` | ${isObject ? 'section' : typeOf(prop)} | ${defaultText} | ${(prop.description ?? '').replace(/\|/g, '\\|')} |`,
    );
    if (isObject) rows(prop, path, out);
    if (isObjectList) rows(prop.items!, `${path}[]`, out);
  }
}

export function renderConfigDocs(): string {
  const schema = z.toJSONSchema(PipelineConfig, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const out = [
    '# `temporal.yaml` reference',
    '',
    '<!-- Generated from schemas/config.ts by `npm run schema`; do not edit by hand. -->',
    '',
    schema.description ?? '',
    '',
    'Check a file with `npx tuneline validate --config FILE`: every problem is listed at once with its path.',
    '',
    '| key | type | default | meaning |',
    '| --- | --- | --- | --- |',
  ];
  rows(schema, '', out);
  return out.join('\n') + '\n';
}
