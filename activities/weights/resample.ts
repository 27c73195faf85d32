/**
 * Step 3c: from per-idx weights to the resampled training set (docs/method.md#resampling-step-3).
 * Positions 0..N−1 are the records of the data file; weight(position) = p[idx of that record],
 * 0 when that idx has no entropy; all-zero → uniform. Draws are with replacement by inverse CDF
 * (Float64 cumulative sums + binary search) on a seeded xoshiro128** stream.
 */
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../pipeline/errors';
import { normaliseOrUniform } from './formulas';
import { Xoshiro128ss } from './prng';

/**
 * Most draws step 3 makes: the drawn positions are held as Uint32 (1 GiB at this count) and
 * written one per line (up to ~3 GB). Beyond it a multiplier is a typo, and allocating for it
 * fails with a RangeError that would be retried as a crash.
 */
export const MAX_DRAWS = 2 ** 28;

/** floor(n × multiplier), or InvalidConfig naming resample.multiplier when that is more than MAX_DRAWS. */
export function drawCount(n: number, multiplier: number): number {
  const draws = Math.floor(n * multiplier);
  if (Number.isFinite(draws) && draws <= MAX_DRAWS) return draws;
  const most = Math.floor(MAX_DRAWS / Math.max(1, n));
  throw ApplicationFailure.create({
    type: ErrorTypes.InvalidConfig,
    nonRetryable: true,
    message: `resample.multiplier ${multiplier} asks for ${n} records × ${multiplier} = ${Number.isFinite(draws) ? draws : 'too many'} draws, more than the ${MAX_DRAWS} step 3 can hold; for these ${n} records use at most ${most} (the original uses 1.0)`,
    details: [
      {
        file: null,
        line: null,
        field: 'resample.multiplier',
        draws: Number.isFinite(draws) ? draws : null,
        maxDraws: MAX_DRAWS,
      },
    ],
  });
}

export interface RecordWeights {
  /** Per position, sums to 1. */
  weights: Float64Array;
  /** Records whose idx has no merged entropy row (weight 0). */
  missingEntropy: number;
  /** Merged entropy rows that no record of the data file uses. */
  entropyWithoutRecord: number;
  uniformFallback: boolean;
}

/** Index of `value` in the ascending `sorted`, or −1. */
function findSorted(sorted: Float64Array, value: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = sorted[mid];
    if (v === value) return mid;
    if (v < value) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

export function recordWeights(recordIdx: Float64Array, mergedIdx: Float64Array, p: Float64Array): RecordWeights {
  const weights = new Float64Array(recordIdx.length);
  const used = new Uint8Array(mergedIdx.length);
  let missingEntropy = 0;
  for (let pos = 0; pos < recordIdx.length; pos++) {
    const row = findSorted(mergedIdx, recordIdx[pos]);
    if (row < 0) missingEntropy++;
    else {
      weights[pos] = p[row];
      used[row] = 1;
    }
  }
  let entropyWithoutRecord = 0;
  for (const u of used) entropyWithoutRecord += 1 - u;
  const uniformFallback = normaliseOrUniform(weights);
  return { weights, missingEntropy, entropyWithoutRecord, uniformFallback };
}

/** `draws` positions drawn with replacement in proportion to `weights` (need not sum to 1; zero weight is never drawn). */
export function drawWithReplacement(weights: Float64Array, draws: number, seed: number): Uint32Array {
  const n = weights.length;
  const cdf = new Float64Array(n);
  let total = 0;
  let lastPositive = -1;
  for (let i = 0; i < n; i++) {
    total += weights[i];
    cdf[i] = total;
    if (weights[i] > 0) lastPositive = i;
  }
  if (lastPositive < 0) throw new Error('cannot draw: every weight is zero');
  const rng = new Xoshiro128ss(seed);
  const out = new Uint32Array(draws);
  for (let k = 0; k < draws; k++) {
    const u = rng.nextFloat() * total;
    // first i with cdf[i] > u
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    // u can round up to `total`; then the last drawable position is meant
    out[k] = cdf[lo] > u ? lo : lastPositive;
  }
  return out;
}

/** Drop repeated positions, keeping each at its first draw (so the order stays random). */
export function dedupeKeepFirst(drawn: Uint32Array, n: number): Uint32Array {
  const seen = new Uint8Array(n);
  const out = new Uint32Array(drawn.length);
  let m = 0;
  for (const pos of drawn) {
    if (seen[pos]) continue;
    seen[pos] = 1;
    out[m++] = pos;
  }
  return out.slice(0, m);
}

/** Quantile with linear interpolation between order statistics (NumPy's default method). */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const at = q * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}

export interface DrawStats {
  draws: number;
  unique: number;
  /** draws − unique: how many draws repeat an earlier one. */
  duplicated: number;
  /** Positions drawn more than once. */
  positionsDrawnMoreThanOnce: number;
  maxMultiplicity: number;
  /** Kish effective sample size (Σw)²/Σw² of the record weights. */
  effectiveSampleSize: number;
  weightQuantiles: Record<string, number>;
}

export function drawStats(weights: Float64Array, drawn: Uint32Array): DrawStats {
  const counts = new Uint32Array(weights.length);
  for (const pos of drawn) counts[pos]++;
  let unique = 0;
  let repeated = 0;
  let maxMultiplicity = 0;
  for (const c of counts) {
    if (c > 0) unique++;
    if (c > 1) repeated++;
    if (c > maxMultiplicity) maxMultiplicity = c;
  }
  let sum = 0;
  let sumSq = 0;
  for (const w of weights) {
    sum += w;
    sumSq += w * w;
  }
  const sorted = Float64Array.from(weights).sort();
  const weightQuantiles: Record<string, number> = {};
  for (const q of [0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1])
    weightQuantiles[`q${String(q * 100).padStart(2, '0')}`] = quantile(sorted, q);
  return {
    draws: drawn.length,
    unique,
    duplicated: drawn.length - unique,
    positionsDrawnMoreThanOnce: repeated,
    maxMultiplicity,
    effectiveSampleSize: sumSq > 0 ? (sum * sum) / sumSq : 0,
    weightQuantiles,
  };
}
