import { Xoshiro128ss, splitMix64 } from '../../activities/weights/prng';
import {
  dedupeKeepFirst,
  drawStats,
  drawWithReplacement,
  quantile,
  recordWeights,
} from '../../activities/weights/resample';

describe('xoshiro128**', () => {
  it('matches the reference C implementation', () => {
    // from the authors' xoshiro128starstar.c with state {1,2,3,4}
    const rng = new Xoshiro128ss([1, 2, 3, 4]);
    expect(Array.from({ length: 6 }, () => rng.nextU32())).toEqual([
      11520, 0, 5927040, 70819200, 2031721883, 1637235492,
    ]);
    expect(splitMix64(0n)().toString(16)).toBe('e220a8397b1dcdaf');
    const seeded = new Xoshiro128ss(42);
    expect(Array.from({ length: 4 }, () => seeded.nextU32())).toEqual([1776835114, 4165204688, 17111135, 2317295270]);
  });

  it('nextFloat is in [0, 1)', () => {
    const rng = new Xoshiro128ss(7);
    for (let i = 0; i < 10000; i++) {
      const u = rng.nextFloat();
      expect(u >= 0 && u < 1).toBe(true);
    }
  });
});

describe('drawWithReplacement', () => {
  const weights = Float64Array.from([0.1, 0.2, 0, 0.3, 0.4]);

  it('is deterministic per seed and differs between seeds', () => {
    const a = drawWithReplacement(weights, 1000, 42);
    expect(drawWithReplacement(weights, 1000, 42)).toEqual(a);
    expect(drawWithReplacement(weights, 1000, 43)).not.toEqual(a);
  });

  it('follows the weights (chi-square, 3 dof, p = 0.001 bound) and never draws weight 0', () => {
    const draws = 200_000;
    const counts = new Array(5).fill(0);
    for (const pos of drawWithReplacement(weights, draws, 1)) counts[pos]++;
    expect(counts[2]).toBe(0);
    let chi2 = 0;
    for (const i of [0, 1, 3, 4]) chi2 += (counts[i] - draws * weights[i]) ** 2 / (draws * weights[i]);
    expect(chi2).toBeLessThan(16.27);
  });

  it('dedupe keeps each position at its first draw', () => {
    expect(Array.from(dedupeKeepFirst(Uint32Array.from([3, 1, 3, 0, 1, 4]), 5))).toEqual([3, 1, 0, 4]);
  });
});

describe('recordWeights', () => {
  it('maps positions to p[idx], gives missing idx weight 0, renormalises', () => {
    // merged idx [10, 20, 30] with p [.5, .3, .2]; records (by position) have idx 20, 99, 10, 20
    const r = recordWeights(
      Float64Array.from([20, 99, 10, 20]),
      Float64Array.from([10, 20, 30]),
      Float64Array.from([0.5, 0.3, 0.2]),
    );
    expect(Array.from(r.weights)).toEqual([0.3 / 1.1, 0, 0.5 / 1.1, 0.3 / 1.1].map((x) => expect.closeTo(x, 12)));
    expect(r.missingEntropy).toBe(1);
    expect(r.entropyWithoutRecord).toBe(1);
    expect(r.uniformFallback).toBe(false);
  });

  it('all-zero record weights → uniform', () => {
    const r = recordWeights(Float64Array.from([5, 6]), Float64Array.from([1]), Float64Array.from([1]));
    expect(Array.from(r.weights)).toEqual([0.5, 0.5]);
    expect(r.uniformFallback).toBe(true);
  });
});

describe('drawStats', () => {
  it('counts unique, duplicated, multiplicity and ESS', () => {
    const s = drawStats(Float64Array.from([0.5, 0.5, 0]), Uint32Array.from([0, 0, 1, 0]));
    expect(s).toMatchObject({
      draws: 4,
      unique: 2,
      duplicated: 2,
      positionsDrawnMoreThanOnce: 1,
      maxMultiplicity: 3,
      effectiveSampleSize: 2,
    });
    expect(quantile(Float64Array.from([0, 1, 2, 3]), 0.5)).toBe(1.5);
  });
});
