/** What the docs and the kernels hold that is generated from the code (client/generatedDocs.ts) stays current. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { blockOf, GENERATED_BLOCKS, GENERATED_FILES } from '../../client/generatedDocs';
import { configReference } from '../../client/configReference';
import { STEPS } from '../../pipeline/steps';

const ROOT = path.join(__dirname, '../..');

test.each(GENERATED_BLOCKS.map((b) => [`${b.file} ${b.name}`, b] as const))(
  '%s matches the code (regenerate: npm run readme)',
  (_name, { file, name, text }) => {
    expect(blockOf(readFileSync(path.join(ROOT, file), 'utf8'), name)).toBe(text().trim());
  },
);

test.each(GENERATED_FILES.map((f) => [f.file, f] as const))(
  '%s matches the code (regenerate: npm run readme)',
  (_name, { file, text }) => {
    expect(readFileSync(path.join(ROOT, file), 'utf8')).toBe(text());
  },
);

test('the reference documents every top-level field with a default or as required', () => {
  const table = configReference();
  for (const field of [
    'runName',
    'runDir',
    'baseModel',
    'dataFile',
    'joint.fusionLambda',
    'extract.submodelIdx',
    'weighting.formula',
    'resample.dedupe',
    'entropy.definition',
  ]) {
    expect(table).toMatch(new RegExp('\\| `' + field.replace('.', '\\.') + '` \\|'));
  }
  expect(table).toMatch(/\| `runName` \| string \| \*\*required\*\* \|/);
});

test("every file the step table names as a step's code exists", () => {
  for (const step of STEPS) {
    expect(step.code.ts.length).toBeGreaterThan(0);
    for (const file of [...step.code.ts, ...step.code.kernel])
      expect([step.id, file, existsSync(path.join(ROOT, file))]).toEqual([step.id, file, true]);
  }
});
