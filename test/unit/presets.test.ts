/** Presets (pipeline/presets.ts): the documented values, explicit fields win, plan shows each value's source. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkRunConfig, parseRunConfig, RunConfig } from '../../pipeline/config';
import { applyPreset, PRESETS } from '../../pipeline/presets';
import { effectiveValues, renderEffectiveValues } from '../../client/commands/effectiveConfig';
import { loadRunConfig } from '../../client/runConfigFile';

const minimal = { runName: 'r1', runDir: '/runs/r1', baseModel: '/models/base', dataFile: '/data/train.jsonl' };

test('preset original resolves to the published code: repo formula and entropy, no dedupe, branch 1 in bf16', () => {
  const c = parseRunConfig({ ...minimal, preset: 'original' });
  expect(c.weighting.formula).toBe('repo');
  expect(c.entropy.definition).toBe('repo');
  expect(c.resample.dedupe).toBe(false);
  expect(c.extract).toEqual({ submodelIdx: 1, dtype: 'bfloat16' });
  // the rest stays at the defaults
  expect(c.joint.fusionLambda).toBe(0.5);
  expect(c.weighting.alpha).toBe(0.1);
});

test('preset paper resolves to the paper: its formula with dedupe on, shifted entropy', () => {
  const c = checkRunConfig({ ...minimal, preset: 'paper' });
  expect(c.weighting.formula).toBe('paper');
  expect(c.resample.dedupe).toBe(true);
  expect(c.entropy.definition).toBe('shifted');
  expect(c.extract.submodelIdx).toBe(1);
  expect(c.extract.dtype).toBe('keep');
});

test('without a preset nothing changes: the defaults as before', () => {
  expect(parseRunConfig(minimal)).toEqual(RunConfig.parse(minimal));
  expect(parseRunConfig(minimal).resample.dedupe).toBe(false);
});

test('explicit fields win over the preset, field by field, and the input is not modified', () => {
  const raw = {
    ...minimal,
    preset: 'paper',
    resample: { dedupe: false, seed: 7 },
    entropy: { definition: 'repo' },
  };
  const before = JSON.stringify(raw);
  const c = parseRunConfig(raw);
  expect(c.resample).toEqual({ dedupe: false, seed: 7, multiplier: 1 });
  expect(c.entropy.definition).toBe('repo');
  expect(c.weighting.formula).toBe('paper'); // not written: the preset's
  expect(JSON.stringify(raw)).toBe(before);
  const orig = parseRunConfig({ ...minimal, preset: 'original', extract: { dtype: 'float32' } });
  expect(orig.extract).toEqual({ submodelIdx: 1, dtype: 'float32' });
});

test('every preset value is a valid config value (each one alone parses)', () => {
  for (const name of Object.keys(PRESETS) as Array<keyof typeof PRESETS>) {
    const c = parseRunConfig({ ...minimal, preset: name });
    for (const [dotted, value] of Object.entries(PRESETS[name])) {
      const got = dotted.split('.').reduce<any>((at, k) => at[k], c);
      expect([dotted, got]).toEqual([dotted, value]);
    }
  }
});

test('an unknown preset is refused naming the field', () => {
  expect(() => checkRunConfig({ ...minimal, preset: 'papr' })).toThrow(/preset: /);
  // a section written as something else stays for the schema to refuse
  expect(applyPreset({ ...minimal, preset: 'paper', resample: 3 })).toMatchObject({ resample: 3 });
  expect(() => checkRunConfig({ ...minimal, preset: 'paper', resample: 3 })).toThrow(/resample: /);
});

test('wmss plan lists each effective value with its source: file line, preset or default', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-preset-'));
  const file = path.join(dir, 'run.json');
  writeFileSync(file, JSON.stringify({ ...minimal, preset: 'paper', resample: { dedupe: false } }, null, 2) + '\n');
  const loaded = loadRunConfig(file);
  const values = effectiveValues(loaded, loaded.config);
  const of = (field: string) => values.find((v) => v.field === field);
  expect(of('resample.dedupe')).toEqual({ field: 'resample.dedupe', value: false, source: `${file}:8` });
  expect(of('weighting.formula')).toEqual({ field: 'weighting.formula', value: 'paper', source: 'preset paper' });
  expect(of('joint.fusionLambda')).toEqual({ field: 'joint.fusionLambda', value: 0.5, source: 'default' });
  expect(of('preset')?.source).toBe(`${file}:6`);
  const text = renderEffectiveValues(values);
  expect(text).toMatch(/weighting\.formula\s+"paper"\s+preset paper/);
  expect(text).toMatch(/entropy\.definition\s+"shifted"\s+preset paper/);
});
