/** The configuration reference and step table in docs/ are generated; this keeps them current. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { configReference } from '../../client/configReference';
import { stepTableMarkdown } from '../../client/stepTable';

test('docs/configuration.md matches the schema (regenerate: npm run readme)', () => {
  const readme = readFileSync(path.join(__dirname, '../../docs/configuration.md'), 'utf8');
  const block = readme.split('<!-- config-reference:start -->')[1]?.split('<!-- config-reference:end -->')[0];
  expect(block?.trim()).toBe(configReference().trim());
});

test('the reference documents every top-level field with a default or as required', () => {
  const table = configReference();
  for (const field of ['runName', 'runDir', 'baseModel', 'dataFile', 'joint.fusionLambda', 'extract.submodelIdx', 'weighting.formula', 'resample.dedupe', 'entropy.definition']) {
    expect(table).toMatch(new RegExp('\\| `' + field.replace('.', '\\.') + '` \\|'));
  }
  expect(table).toMatch(/\| `runName` \| string \| \*\*required\*\* \|/);
});

test('docs/recovery.md step table (timeouts, retry policies) matches pipeline/steps.ts (regenerate: npm run readme)', () => {
  const readme = readFileSync(path.join(__dirname, '../../docs/recovery.md'), 'utf8');
  const block = readme.split('<!-- step-table:start -->')[1]?.split('<!-- step-table:end -->')[0];
  expect(block?.trim()).toBe(stepTableMarkdown().trim());
});
