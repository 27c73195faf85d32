/**
 * The sweep's files: a sweep file refused naming file, line and field (client/commands/startSweep.ts);
 * seeding a point's run dir from the leader's (activities/sweepActivities.ts); the sweep report's
 * spread across seeds and accuracy against λ (client/report/sweepReport.ts).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSweepFile } from '../../client/commands/startSweep';
import { writeSweepReport } from '../../client/report/sweepReport';
import { seedPointRunDir } from '../../activities/sweepActivities';
import { manifestFile, readManifest } from '../../activities/store/manifest';
import { runStep } from '../../activities/store/artifactStore';
import { RunConfig } from '../../pipeline/config';

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'wmss-sweepfiles-'));

describe('a sweep file', () => {
  const write = (body: unknown) => {
    const dir = tmp();
    const file = path.join(dir, 'sweep.json');
    writeFileSync(file, JSON.stringify(body, null, 2) + '\n');
    return { dir, file };
  };
  const base = { baseModel: '/models/base', dataFile: '/data/train.jsonl' };

  test('is read with its paths made absolute and its base config complete', () => {
    const { dir, file } = write({ sweepName: 's', sweepDir: 'out', config: base, grid: { seed: [1, 2] } });
    const spec = readSweepFile(file, dir);
    expect(spec.sweepDir).toBe(path.join(dir, 'out'));
    expect((spec.config as RunConfig).joint.fusionLambda).toBe(0.5);
    expect(spec.config).not.toHaveProperty('runName');
  });

  test('may name a run config file as its base config', () => {
    const { dir, file } = write({ sweepName: 's', sweepDir: 'out', config: 'run.json', grid: { seed: [1] } });
    writeFileSync(path.join(dir, 'run.json'), JSON.stringify({ runName: 'r', runDir: 'x', ...base, preset: 'paper' }));
    expect((readSweepFile(file, dir).config as RunConfig).resample.dedupe).toBe(true);
  });

  test.each([
    [{ grid: { 'joint.fusionLamda': [0.3] } }, /sweep\.json:9:5: grid\.joint\.fusionLamda: unknown config field/],
    [{ grid: {} }, /sweep\.json:8:3: grid: empty grid/],
    [{ grid: { seed: [] } }, /sweep\.json:9:5: grid\.seed: empty list of values/],
    [{ points: [{ 'sft.lrr': 1 }] }, /sweep\.json:\d+:\d+: points\.0\.sft\.lrr: unknown config field/],
    [{ config: { ...base, sft: { lr: -1 } }, grid: { seed: [1] } }, /sweep\.json:\d+:\d+: config\.sft\.lr: /],
  ])('%j is refused naming file, line and field', (extra, message) => {
    const { dir, file } = write({ sweepName: 's', sweepDir: 'out', config: base, ...extra });
    expect(() => readSweepFile(file, dir)).toThrow(message);
  });
});

test("seeding links the leader's outputs and manifests, and leaves a point's own records alone", async () => {
  const dir = tmp();
  const leader = path.join(dir, 'p0');
  const point = path.join(dir, 'p1');
  const input = (runDir: string) => ({
    stepId: 'snapshot' as const,
    config: RunConfig.parse({ runName: 'x', runDir, baseModel: '/m', dataFile: '/d' }),
    deps: {},
  });
  let produced = 0;
  const spec = {
    cacheKey: { v: 1 },
    outputs: { model: 'stage0_m0' },
    mode: 'atomic' as const,
    produce: async ({ paths }: { paths: Record<string, string> }) => {
      produced++;
      mkdirSync(paths.model);
      writeFileSync(path.join(paths.model, 'w.bin'), 'weights');
      writeFileSync(path.join(paths.model, '.complete'), '');
      return {};
    },
  };
  await runStep(input(leader), spec);
  expect(await seedPointRunDir({ from: leader, to: point, steps: ['snapshot', 'sft'] })).toEqual({
    seeded: ['snapshot'], // sft: the leader has no record, so the point computes it
    kept: [],
  });
  const ino = (d: string, f: string) => statSync(path.join(d, 'stage0_m0', f)).ino;
  expect(ino(point, 'w.bin')).toBe(ino(leader, 'w.bin'));
  expect(existsSync(path.join(point, 'stage0_m0', '.complete'))).toBe(true); // dotfiles too
  // the point's run finds a verified hit: produce does not run again
  const hit = await runStep(input(point), spec);
  expect([hit.cached, produced]).toEqual([true, 1]);
  expect((await readManifest(point, 'snapshot'))?.cacheKey).toBe((await readManifest(leader, 'snapshot'))?.cacheKey);
  // seeding again keeps what the point has
  expect(await seedPointRunDir({ from: leader, to: point, steps: ['snapshot'] })).toEqual({
    seeded: [],
    kept: ['snapshot'],
  });
  // a re-run in the point replaces its copy by rename: the leader's file is untouched
  await runStep(input(point), { ...spec, cacheKey: { v: 2 } });
  expect(ino(point, 'w.bin')).not.toBe(ino(leader, 'w.bin'));
  expect(readFileSync(path.join(leader, 'stage0_m0', 'w.bin'), 'utf8')).toBe('weights');
  expect(existsSync(manifestFile(leader, 'snapshot'))).toBe(true);
});

test('the sweep report: spread across seeds, significance per seed, accuracy against λ', () => {
  const dir = tmp();
  // 3 seeds × 2 λ; 20 problems; wmss right on `k` problems, m1 on the first 10
  const points: unknown[] = [];
  const wmssRight: Record<string, number> = {
    '0.3-1': 2,
    '0.3-2': 3,
    '0.3-3': 1,
    '0.7-1': 12,
    '0.7-2': 14,
    '0.7-3': 13,
  };
  let i = 0;
  for (const lambda of [0.3, 0.7])
    for (const seed of [1, 2, 3]) {
      const runDir = path.join(dir, `p${i}`);
      for (const [label, right] of [
        ['wmss', wmssRight[`${lambda}-${seed}`]],
        ['m1', 10],
      ] as const) {
        mkdirSync(path.join(runDir, 'results', label, 'sums'), { recursive: true });
        const rows = Array.from({ length: 20 }, (_, id) => `${id},${id < right ? 1 : 0}`);
        writeFileSync(
          path.join(runDir, 'results', label, 'sums', 'eval_detail.csv'),
          ['id,correct', ...rows].join('\n'),
        );
      }
      points.push({ name: `p${i}`, runDir, state: 'completed', overrides: { seed, 'joint.fusionLambda': lambda } });
      i++;
    }
  writeFileSync(path.join(dir, 'sweep.json'), JSON.stringify({ sweepName: 't', shared: ['entropy0'], points }));
  const files = writeSweepReport(dir);
  const md = readFileSync(files.markdown, 'utf8');
  // λ 0.3: wmss 2, 3, 1 of 20 → 10, 15, 5 %: mean 10, sd 5; m1 right on 10, wmss only on a subset: b = 0, c = 8, 7, 9
  expect(md).toMatch(
    /\| \{"joint.fusionLambda":0.3\} \| WMSS vs m1 \(Stage-1 SFT\) \| 3 \| 10\.0 ± 5\.0 \| -40\.0 ± 5\.0 \(-45\.0 … -35\.0\) \| 3 of 3 \|/,
  );
  expect(md).toMatch(
    /across 3 seeds WMSS − m1 \(Stage-1 SFT\) = -40\.0 ± 5\.0 points .* in 3 of 3 seeds; consistent in sign/,
  );
  // λ 0.7: wmss 12, 14, 13 → +10, +20, +15; c = 0, b = 2, 4, 3 → p = 0.5, 0.125, 0.25: none significant
  expect(md).toMatch(
    /\{"joint.fusionLambda":0.7\}: across 3 seeds .* = 15\.0 ± 5\.0 points .* in 0 of 3 seeds; not a consistent difference/,
  );
  const svg = readFileSync(files.charts[0], 'utf8');
  expect(svg).toMatch(/data-series="WMSS"/);
  expect(svg).toMatch(/data-series="m1 \(Stage-1 SFT\)"/);
});
