/** Rewrites the generated configuration reference (docs/configuration.md, from the schema) and step table (docs/recovery.md, from pipeline/steps.ts) (`npm run readme`). */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { configReference } from '../client/configReference';
import { stepTableMarkdown } from '../client/stepTable';

const docs = path.join(__dirname, '..', '..', 'docs');
for (const [name, file, text] of [['config-reference', 'configuration.md', configReference()], ['step-table', 'recovery.md', stepTableMarkdown()]]) {
  const target = path.join(docs, file);
  const [head, rest] = readFileSync(target, 'utf8').split(`<!-- ${name}:start -->`);
  const tail = rest.split(`<!-- ${name}:end -->`)[1];
  writeFileSync(target, `${head}<!-- ${name}:start -->\n${text}\n<!-- ${name}:end -->${tail}`);
}
