/**
 * The version of the code a step runs, for its cache key: a hash over the step's own module, every
 * project module it imports at run time (type-only imports erase, so they do not count), the
 * versions of the packages those modules import, and, for steps that run the engine, the engine
 * command's Python modules and pinned requirements. Editing the report's code therefore re-runs the
 * report and nothing else; editing the training code re-trains.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256Hex } from './artifacts';

const defaultRoot = resolve(import.meta.dirname, '..');

/**
 * The engine modules each `python -m engine` command starts from. The dispatcher, cli.py, counts as a
 * file for every command, but its imports are not followed: it imports every command's modules lazily.
 */
export const ENGINE_COMMANDS = {
  train: ['train', 'data', 'spec'],
  export: ['export', 'models'],
  'export-embedder': ['export_embedder', 'embedder'],
  score: ['score'],
  perplexity: ['score', 'export'],
  'model-info': ['models'],
} as const;
export type EngineCommand = keyof typeof ENGINE_COMMANDS;

// `import x from './a'`, `export { y } from '../b'`, `import './c'`, `import('./d')`; not `import type`.
const TS_IMPORT =
  /(?:^|[\s;])(?:import|export)\s+(?!type\s)(?:[\w*{}\s,$]*?\s+from\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;
// `from engine.x import ...`, `from engine import x, y`, `import engine.x`.
const PY_IMPORT = /^\s*(?:from\s+engine\.(\w+)\s+import|from\s+engine\s+import\s+(?:\(([\w\s,]+)\)|([\w \t,]+))|import\s+engine\.(\w+))/gm;

function resolveTsImport(fromFile: string, specifier: string): string | undefined {
  const base = resolve(dirname(fromFile), specifier);
  for (const candidate of [base, `${base}.ts`, join(base, 'index.ts')]) {
    if (candidate.endsWith('.ts') && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The package a bare specifier names: `zod`, `@temporalio/activity`, `apache-arrow` (not `node:fs`). */
function packageName(specifier: string): string | undefined {
  if (specifier.startsWith('node:') || specifier.startsWith('.')) return undefined;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

function packageVersion(root: string, name: string): string {
  try {
    const manifest = JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version?: string };
    return manifest.version ?? 'unknown';
  } catch {
    return 'builtin';
  }
}

/** Every project file the module imports at run time, itself included, and the packages they use. */
export function tsClosure(entry: string, root = defaultRoot): { files: string[]; packages: string[] } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(TS_IMPORT)) {
      const specifier = (match[1] ?? match[2])!;
      if (specifier.startsWith('.')) {
        const target = resolveTsImport(file, specifier);
        if (target) visit(target);
      } else {
        const name = packageName(specifier);
        if (name) packages.add(name);
      }
    }
  };
  visit(resolve(root, entry));
  return { files: [...files].sort(), packages: [...packages].sort() };
}

/** The engine modules a command runs: its entry modules and what they import from the engine. */
export function engineClosure(command: EngineCommand, root = defaultRoot): string[] {
  const files = new Set<string>();
  const visit = (module: string) => {
    const file = join(root, 'engine', `${module}.py`);
    if (files.has(file) || !existsSync(file)) return;
    files.add(file);
    for (const match of readFileSync(file, 'utf8').matchAll(PY_IMPORT)) {
      const names = match[1] ?? match[2] ?? match[3] ?? match[4]!;
      for (const name of names.split(/[\s,]+/).filter(Boolean)) visit(name);
    }
  };
  for (const module of ENGINE_COMMANDS[command]) visit(module);
  return [...files, join(root, 'engine', 'cli.py')].sort();
}

/** The code version of the step defined in `entry` (a path relative to `root`), running `engine` when given. */
export function computeCodeVersion(entry: string, engine: EngineCommand | undefined, root: string): string {
  const { files, packages } = tsClosure(entry, root);
  const engineFiles = engine ? [...engineClosure(engine, root), join(root, 'engine', 'requirements.txt')] : [];
  const parts = [
    ...[...files, ...engineFiles].map((file) => `${relative(root, file)}\n${readFileSync(file, 'utf8')}`),
    ...packages.map((name) => `package ${name}@${packageVersion(root, name)}`),
  ];
  return sha256Hex(parts.join('\n\0')).slice(0, 16);
}

const memo = new Map<string, string>();

/**
 * The code version of a step defined in `moduleUrl` (pass `import.meta.url`), running `engine` when
 * given. Memoised: a worker runs the code it loaded, whatever happens to the files later.
 */
export function codeVersion(moduleUrl: string, engine?: EngineCommand): string {
  const memoKey = `${moduleUrl}\0${engine ?? ''}`;
  let version = memo.get(memoKey);
  if (!version) {
    version = computeCodeVersion(relative(defaultRoot, fileURLToPath(moduleUrl)), engine, defaultRoot);
    memo.set(memoKey, version);
  }
  return version;
}

const SOURCE_FOLDERS = ['activities', 'cli', 'lib', 'sample-data', 'schemas', 'serve', 'workers', 'workflows', 'engine'];
let sourcesVersion: string | undefined;

/** Hash of every TypeScript and Python source file of this checkout (tests excluded): the run manifest's `code.sources`. */
export function allSourcesVersion(root = defaultRoot): string {
  if (sourcesVersion) return sourcesVersion;
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'tests' && entry.name !== '__pycache__') walk(path);
      } else if (/\.(ts|py)$/.test(entry.name)) files.push(path);
    }
  };
  for (const folder of SOURCE_FOLDERS) if (existsSync(join(root, folder))) walk(join(root, folder));
  sourcesVersion = sha256Hex(files.map((file) => `${relative(root, file)}\n${readFileSync(file, 'utf8')}`).join('\n\0')).slice(0, 16);
  return sourcesVersion;
}
