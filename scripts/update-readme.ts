/** Rewrites the README's configuration reference (from the schema) and step table (from pipeline/steps.ts) (`npm run readme`). */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { configReference } from '../client/configReference';
import { stepTableMarkdown } from '../client/stepTable';

const file = path.join(__dirname, '..', '..', 'README.md');
let readme = readFileSync(file, 'utf8');
for (const [name, text] of [['config-reference', configReference()], ['step-table', stepTableMarkdown()]]) {
  const [head, rest] = readme.split(`<!-- ${name}:start -->`);
  const tail = rest.split(`<!-- ${name}:end -->`)[1];
  readme = `${head}<!-- ${name}:start -->\n${text}\n<!-- ${name}:end -->${tail}`;
}
writeFileSync(file, readme);
