/** Writes `schemas/json/*` and `docs/config.md` from the zod definitions (`npm run schema`). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderConfigDocs } from './config-docs';
import { emittedSchemas, renderEngineErrors, renderJsonSchema } from './json-schemas';

const root = join(import.meta.dirname, '..');
mkdirSync(join(root, 'schemas', 'json'), { recursive: true });
for (const [file, schema] of Object.entries(emittedSchemas)) {
  writeFileSync(join(root, 'schemas', 'json', file), renderJsonSchema(schema));
  console.log(`wrote schemas/json/${file}`);
}
writeFileSync(join(root, 'schemas', 'json', 'engine-errors.json'), renderEngineErrors());
console.log('wrote schemas/json/engine-errors.json');
mkdirSync(join(root, 'docs'), { recursive: true });
writeFileSync(join(root, 'docs', 'config.md'), renderConfigDocs());
console.log('wrote docs/config.md');
