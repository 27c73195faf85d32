/**
 * The statistics of the report's comparisons (docs/operating.md#statistics): McNemar's exact test
 * on paired per-problem outcomes, percentile-bootstrap confidence intervals over problems, and
 * the spread of a figure across seeds. Pure functions; the report reads the outcomes from
 * results/<model>/<set>/eval_detail.csv.
 */
import { Xoshiro128ss } from '../../activities/weights/prng';

/** Counts of a paired comparison of A and B on the same problems. */
export interface PairCounts {
  n: number;
  /** both correct */
  both: number;
  /** A correct, B wrong (discordant) */
  onlyA: number;
  /** B correct, A wrong (discordant) */
  onlyB: number;
  neither: number;
}

export function pairCounts(a: readonly number[], b: readonly number[]): PairCounts {
  if (a.length !== b.length) throw new Error(`paired outcomes of different lengths: ${a.length} and ${b.length}`);
  const c: PairCounts = { n: a.length, both: 0, onlyA: 0, onlyB: 0, neither: 0 };
  a.forEach((x, i) => {
    const ya = x >= 0.5;
    const yb = b[i] >= 0.5;
    if (ya && yb) c.both++;
    else if (ya) c.onlyA++;
    else if (yb) c.onlyB++;
    else c.neither++;
  });
  return c;
}

/**
 * McNemar's exact test, two-sided: under "A and B are equally good", each of the b + c discordant
 * problems is won by A with probability 1/2, so p = min(1, 2 · P(X ≤ min(b, c))) for
 * X ~ Binomial(b + c, 1/2). No discordant problem at all: p = 1.
 */
export function mcnemarExact(b: number, c: number): number {
  if (!Number.isInteger(b) || !Number.isInteger(c) || b < 0 || c < 0)
    throw new Error(`McNemar counts must be non-negative integers, got ${b} and ${c}`);
  const m = b + c;
  if (m === 0) return 1;
  const k = Math.min(b, c);
  // P(X = i) in logs, each from the one before (C(m, i+1) = C(m, i)·(m − i)/(i + 1)): no overflow
  let logP = -m * Math.LN2;
  let tail = 0;
  for (let i = 0; i <= k; i++) {
    tail += Math.exp(logP);
    logP += Math.log(m - i) - Math.log(i + 1);
  }
  return Math.min(1, 2 * tail);
}

export interface Interval {
  estimate: number;
  low: number;
  high: number;
}

export interface BootstrapOptions {
  /** resamples (default 2000) */
  reps?: number;
  /** confidence level (default 0.95) */
  level?: number;
  /** seed of the resampling stream (default 42): the same data give the same interval */
  seed?: number;
}

/** The lower and upper percentile of sorted values: positions floor(R·α/2) and ceil(R·(1 − α/2)) − 1. */
export function percentileInterval(sorted: readonly number[], level: number): { low: number; high: number } {
  const r = sorted.length;
  const alpha = 1 - level;
  const lo = Math.min(r - 1, Math.max(0, Math.floor(r * (alpha / 2))));
  const hi = Math.min(r - 1, Math.max(0, Math.ceil(r * (1 - alpha / 2)) - 1));
  return { low: sorted[lo], high: sorted[hi] };
}

/**
 * Percentile bootstrap over problems of a statistic of one or more per-problem columns that are
 * resampled together (paired): each resample draws n problem indices with replacement.
 */
export function bootstrap(
  columns: ReadonlyArray<readonly number[]>,
  statistic: (cols: ReadonlyArray<readonly number[]>, idx: ArrayLike<number>) => number,
  opts: BootstrapOptions = {},
): Interval {
  const n = columns[0]?.length ?? 0;
  if (columns.some((c) => c.length !== n)) throw new Error('bootstrap columns of different lengths');
  if (n === 0) return { estimate: NaN, low: NaN, high: NaN };
  const reps = opts.reps ?? 2000;
  const rng = new Xoshiro128ss(opts.seed ?? 42);
  const all = Uint32Array.from({ length: n }, (_, i) => i);
  const idx = new Uint32Array(n);
  const values = new Float64Array(reps);
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < n; i++) idx[i] = Math.floor(rng.nextFloat() * n);
    values[r] = statistic(columns, idx);
  }
  values.sort();
  return { estimate: statistic(columns, all), ...percentileInterval(Array.from(values), opts.level ?? 0.95) };
}

const meanAt = (col: readonly number[], idx: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < idx.length; i++) s += col[idx[i]];
  return s / idx.length;
};

/** Accuracy (mean per-problem score) with its bootstrap interval. */
export function accuracyInterval(scores: readonly number[], opts?: BootstrapOptions): Interval {
  return bootstrap([scores], ([a], idx) => meanAt(a, idx), opts);
}

/** Accuracy of A minus accuracy of B on the same problems, resampled in pairs. */
export function differenceInterval(a: readonly number[], b: readonly number[], opts?: BootstrapOptions): Interval {
  return bootstrap([a, b], ([x, y], idx) => meanAt(x, idx) - meanAt(y, idx), opts);
}

export interface Spread {
  n: number;
  mean: number;
  /** sample standard deviation (n − 1); 0 for one value */
  sd: number;
  min: number;
  max: number;
}

/** Spread of one figure over seeds. */
export function spread(values: readonly number[]): Spread {
  const n = values.length;
  if (n === 0) return { n, mean: NaN, sd: NaN, min: NaN, max: NaN };
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { n, mean, sd, min: Math.min(...values), max: Math.max(...values) };
}
