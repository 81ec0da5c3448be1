/**
 * Checks a parsed `temporal.yaml` against the schema and collects every problem at once, each with
 * its path, what was expected and what was found. Pure: the CLI and the workflow's first activity
 * both use it, so a client that bypasses the CLI still gets the same checks.
 */
import { z } from 'zod';
import { PipelineConfig } from './config';

export interface ConfigProblem {
  path: string;
  message: string;
}

export type ConfigCheck = { ok: true; config: PipelineConfig } | { ok: false; problems: ConfigProblem[] };

function describeFound(input: unknown): string {
  if (input === undefined) return 'nothing';
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'a list';
  if (typeof input === 'object') return 'an object';
  const text = JSON.stringify(input);
  return `${typeof input} ${text.length > 40 ? `${text.slice(0, 40)}…` : text}`;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  // A custom (cross-field) check's input is a whole object; naming it adds nothing.
  const found = 'input' in issue && issue.code !== 'custom' ? `, found ${describeFound(issue.input)}` : '';
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${issue.expected}${found}`;
    case 'unrecognized_keys':
      return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')} (check the spelling)`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}${found}`;
    default:
      return `${issue.message}${found}`;
  }
}

function pathText(path: PropertyKey[]): string {
  return (
    path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '') || '(top level)'
  );
}

export function checkConfig(raw: unknown): ConfigCheck {
  const parsed = PipelineConfig.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    return { ok: false, problems: parsed.error.issues.map((i) => ({ path: pathText(i.path), message: describeIssue(i) })) };
  }
  return { ok: true, config: parsed.data };
}

export function formatProblems(problems: ConfigProblem[], file = 'temporal.yaml'): string {
  const lines = problems.map((p) => `  - ${p.path}: ${p.message}`);
  return `${file} has ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n${lines.join('\n')}`;
}
