/**
 * Rewrites everything generated from the code (`npm run readme`): the configuration reference,
 * the step tables, the kernel job tables and kernels/wmss_kernels/job_schema.json
 * (client/generatedDocs.ts lists them).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GENERATED_BLOCKS, GENERATED_FILES, replaceBlock } from '../client/generatedDocs';

const root = path.join(__dirname, '..', '..');
for (const { file, name, text } of GENERATED_BLOCKS) {
  const target = path.join(root, file);
  writeFileSync(target, replaceBlock(readFileSync(target, 'utf8'), name, text()));
}
for (const { file, text } of GENERATED_FILES) writeFileSync(path.join(root, file), text());
