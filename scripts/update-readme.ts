/** Rewrites the README's configuration reference from the schema (`npm run readme`). */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { configReference } from '../client/configReference';

const file = path.join(__dirname, '..', '..', 'README.md');
const readme = readFileSync(file, 'utf8');
const [head, rest] = readme.split('<!-- config-reference:start -->');
const tail = rest.split('<!-- config-reference:end -->')[1];
writeFileSync(file, `${head}<!-- config-reference:start -->\n${configReference()}\n<!-- config-reference:end -->${tail}`);
