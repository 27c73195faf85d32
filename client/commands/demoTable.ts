/**
 * The demo's accuracy table: the models side by side in a fixed order (base, m1, continued SFT,
 * WMSS), each set's pass@1, and for the sets whose row count is known the number of problems and a
 * 95 % Wilson score interval, so a difference of a few problems is not read as a result.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import { CONTINUED_SFT_LABEL } from '../../pipeline/stepDefinitions/continuedSft';

/** The order of the rows; models not named here follow in the order they came. */
export const MODEL_ORDER = ['base', 'm1', CONTINUED_SFT_LABEL, 'wmss'] as const;

/**
 * The Wilson score interval of `correct` successes in `n` trials (z = 1.96: 95 %). Unlike the
 * normal approximation it stays inside [0, 1] and is not empty at 0 or n successes.
 */
export function wilsonInterval(correct: number, n: number, z = 1.96): [number, number] {
  if (!(n > 0) || correct < 0 || correct > n) throw new RangeError(`wilsonInterval: ${correct} of ${n}`);
  const p = correct / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** Rows per set of one model's step-7 results (results/<model>/summary.json), when readable. */
export function evaluatedRows(runDir: string, model: string): Record<string, number> {
  try {
    const summary = JSON.parse(readFileSync(path.join(runDir, A.RESULTS_DIR, model, 'summary.json'), 'utf8')) as {
      datasets?: Record<string, { n?: unknown }>;
    };
    return Object.fromEntries(
      Object.entries(summary.datasets ?? {}).flatMap(([set, s]) => (typeof s.n === 'number' ? [[set, s.n]] : [])),
    );
  } catch {
    return {};
  }
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/**
 * Lines of the table. `intervalSets`: the sets that get n and the interval (the demo's held-out
 * sums); the others show their pass@1 only.
 */
export function accuracyTable(
  accuracy: Record<string, Record<string, number>>,
  rows: (model: string) => Record<string, number>,
  intervalSets: readonly string[],
): string[] {
  const models = [
    ...MODEL_ORDER.filter((m) => m in accuracy),
    ...Object.keys(accuracy).filter((m) => !(MODEL_ORDER as readonly string[]).includes(m)),
  ];
  const sets = [...new Set(Object.values(accuracy).flatMap((a) => Object.keys(a)))];
  const cell = (model: string, set: string): string => {
    const acc = accuracy[model][set];
    if (acc === undefined) return '–';
    const n = rows(model)[set];
    if (!intervalSets.includes(set) || n === undefined) return pct(acc);
    const [lo, hi] = wilsonInterval(Math.round(acc * n), n);
    return `${pct(acc)} [${(100 * lo).toFixed(1)}–${(100 * hi).toFixed(1)}] n=${n}`;
  };
  const cells = models.map((m) => sets.map((s) => cell(m, s)));
  const heads = sets.map((s) => (intervalSets.includes(s) ? `${s} (95% Wilson)` : s));
  const width = sets.map((s, j) => Math.max(heads[j].length, ...cells.map((row) => row[j].length)));
  const nameWidth = Math.max(5, ...models.map((m) => m.length));
  const line = (name: string, values: string[]) =>
    `  ${name.padEnd(nameWidth)} ${values.map((v, j) => v.padStart(width[j])).join('  ')}`;
  return [line('model', heads), ...models.map((m, i) => line(m, cells[i]))];
}
