/** The report's statistics (client/report/stats.ts, paired.ts) against cases computed by hand. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  accuracyInterval,
  differenceInterval,
  mcnemarExact,
  pairCounts,
  percentileInterval,
  spread,
} from '../../client/report/stats';
import { compare, comparisonsOf, outcomeSentence, parseCsv, readOutcomes } from '../../client/report/paired';

describe("McNemar's exact test", () => {
  test.each([
    // p = 2 · Σ_{i ≤ min} C(b+c, i) / 2^(b+c)
    [1, 9, (2 * (1 + 10)) / 1024], // 22/1024 = 0.0215
    [9, 1, (2 * (1 + 10)) / 1024], // symmetric
    [2, 8, (2 * (1 + 10 + 45)) / 1024], // 112/1024 = 0.109
    [0, 5, 2 / 32], // 0.0625: five discordant all one way is not significant at 5 %
    [0, 6, 2 / 64], // 0.03125: six is
    [3, 3, 1], // 2 · 42/64 > 1 → clamped to 1
    [0, 0, 1], // nothing discordant
    [0, 1, 1],
  ])('b = %d, c = %d → p = %f', (b, c, p) => {
    expect(mcnemarExact(b, c)).toBeCloseTo(p, 12);
  });

  test('a large table stays finite and agrees with the normal approximation', () => {
    // b = 40, c = 60: z = (60 − 40)/√100 = 2 → two-sided normal p ≈ 0.0455 (continuity-corrected 0.0574)
    const p = mcnemarExact(40, 60);
    expect(p).toBeGreaterThan(0.04);
    expect(p).toBeLessThan(0.06);
    expect(mcnemarExact(5000, 5000)).toBeCloseTo(1, 6);
  });

  test('refuses counts that are not counts', () => {
    expect(() => mcnemarExact(-1, 2)).toThrow(/non-negative integers/);
    expect(() => mcnemarExact(1.5, 2)).toThrow(/non-negative integers/);
  });
});

test('pair counts of two outcome columns', () => {
  expect(pairCounts([1, 1, 0, 0, 1], [1, 0, 1, 0, 0])).toEqual({ n: 5, both: 1, onlyA: 2, onlyB: 1, neither: 1 });
  expect(() => pairCounts([1], [1, 0])).toThrow(/different lengths/);
});

describe('bootstrap over problems', () => {
  test('percentile positions: floor(R·0.025) and ceil(R·0.975) − 1', () => {
    const sorted = Array.from({ length: 200 }, (_, i) => i);
    expect(percentileInterval(sorted, 0.95)).toEqual({ low: 5, high: 194 });
    expect(percentileInterval([7], 0.95)).toEqual({ low: 7, high: 7 });
  });

  test('no variation, no interval width', () => {
    expect(accuracyInterval(Array(20).fill(1))).toEqual({ estimate: 1, low: 1, high: 1 });
    expect(accuracyInterval(Array(20).fill(0))).toEqual({ estimate: 0, low: 0, high: 0 });
    expect(differenceInterval([1, 0, 1], [1, 0, 1])).toEqual({ estimate: 0, low: 0, high: 0 });
  });

  test('two problems [0, 1]: resample means 0, ½, 1 with probabilities ¼, ½, ¼, so the 95 % interval is [0, 1]', () => {
    const ci = accuracyInterval([0, 1], { reps: 4000 });
    expect(ci).toEqual({ estimate: 0.5, low: 0, high: 1 });
    // with a 40 % level the interval lies inside the middle half: [½, ½]
    expect(accuracyInterval([0, 1], { reps: 4000, level: 0.4 })).toEqual({ estimate: 0.5, low: 0.5, high: 0.5 });
  });

  test('n = 200 at 50 %: about ±1.96·√(0.25/200) = ±6.9 points, and reproducible for a seed', () => {
    const scores = Array.from({ length: 200 }, (_, i) => i % 2);
    const ci = accuracyInterval(scores);
    expect(ci.estimate).toBe(0.5);
    expect(ci.high - ci.low).toBeGreaterThan(0.12);
    expect(ci.high - ci.low).toBeLessThan(0.16);
    expect(accuracyInterval(scores)).toEqual(ci);
    expect(accuracyInterval(scores, { seed: 7 })).not.toEqual(ci);
  });

  test('a paired difference resamples problems together: A always one better on the same problems → a point interval', () => {
    // A = B + 1 on every problem, whatever B is: every resample has difference exactly 1 … scaled to scores
    const b = [0, 0, 0, 0];
    const a = [1, 1, 1, 1];
    expect(differenceInterval(a, b)).toEqual({ estimate: 1, low: 1, high: 1 });
    // unpaired resampling of such columns would not be a point; paired, A − B on [1,0],[0,0] has means 0, ½, 1
    expect(differenceInterval([1, 0], [0, 0], { reps: 4000 })).toEqual({ estimate: 0.5, low: 0, high: 1 });
  });
});

test('spread across seeds: mean, sample sd, min, max', () => {
  // values 0.2, 0.4, 0.6: mean 0.4, squared deviations 0.04 + 0 + 0.04 = 0.08, / 2 = 0.04, sd 0.2
  const s = spread([0.2, 0.4, 0.6]);
  expect(s.n).toBe(3);
  expect(s.mean).toBeCloseTo(0.4, 12);
  expect(s.sd).toBeCloseTo(0.2, 12);
  expect([s.min, s.max]).toEqual([0.2, 0.6]);
  expect(spread([0.3])).toEqual({ n: 1, mean: 0.3, sd: 0, min: 0.3, max: 0.3 });
});

test('CSV with quoted commas, quotes and newlines', () => {
  expect(parseCsv('id,response,correct\n0,"a, ""b""\nc",1\r\n1,x,0\n')).toEqual([
    ['id', 'response', 'correct'],
    ['0', 'a, "b"\nc', '1'],
    ['1', 'x', '0'],
  ]);
});

/** A results dir as step 7 writes it: results/<label>/<set>/eval_detail.csv. */
function runWith(outcomes: Record<string, number[]>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-stats-'));
  for (const [label, correct] of Object.entries(outcomes)) {
    mkdirSync(path.join(dir, 'results', label, 'arithmetic'), { recursive: true });
    const rows = correct.map((c, i) => `${i},"[1, 2]","What is ${i} + 1?",${c ? 'True' : 'False'},${c}`);
    writeFileSync(
      path.join(dir, 'results', label, 'arithmetic', 'eval_detail.csv'),
      ['id,token_ids,question,verified,correct', ...rows].join('\n') + '\n',
    );
  }
  return dir;
}

test('paired comparison from eval_detail.csv: WMSS vs continued SFT when present, and vs m1', () => {
  // 10 problems: wmss right where m1 is wrong on 1, m1 right where wmss is wrong on 9 → p = 22/1024
  const wmss = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
  const m1 = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1];
  const sft = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
  const dir = runWith({ wmss, m1, sft, base: Array(10).fill(0) });
  const outcomes = readOutcomes(dir);
  expect(comparisonsOf(outcomes)).toEqual([
    ['wmss', 'sft'],
    ['wmss', 'm1'],
  ]);
  const vsM1 = compare(outcomes, 'wmss', 'm1')!;
  expect(vsM1.counts).toEqual({ n: 10, both: 0, onlyA: 1, onlyB: 9, neither: 0 });
  expect(vsM1.p).toBeCloseTo(22 / 1024, 12);
  expect(vsM1.diff.estimate).toBeCloseTo(-0.8, 12);
  expect(outcomeSentence(vsM1, { wmss: 'WMSS', m1: 'm1' })).toMatch(
    /^WMSS scored significantly lower than m1 at n = 10 problems .*p = 0\.021.*one seed\) only\.$/,
  );
  const vsSft = compare(outcomes, 'wmss', 'sft')!;
  expect(vsSft.p).toBe(1);
  expect(outcomeSentence(vsSft)).toMatch(
    /^No significant difference between wmss and sft at n = 10 problems .*not show that they are equally good\.$/,
  );
  // without the baseline arm: only m1
  expect(comparisonsOf(readOutcomes(runWith({ wmss, m1 })))).toEqual([['wmss', 'm1']]);
});
