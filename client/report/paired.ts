/**
 * Per-problem paired results of step 7: the outcome of every problem for every model, read from
 * results/<model>/<set>/eval_detail.csv, and the comparison of two models on the problems both
 * answered (WMSS against m1, and against continued SFT of m1 when the run has that baseline arm).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import {
  accuracyInterval,
  differenceInterval,
  mcnemarExact,
  pairCounts,
  type BootstrapOptions,
  type Interval,
  type PairCounts,
} from './stats';

/**
 * Result labels of the continued-SFT baseline (step 5c, "continued SFT of m1"): the first one a
 * run has is used. Step 7 evaluates it beside base, m1 and the WMSS model.
 */
export const CONTINUED_SFT_LABELS = ['sft', 'csft', 'continued_sft', 'baseline'];

/** label → set → problem id → score (the mean of `correct` over the problem's generations: 0 or 1 when greedy). */
export type Outcomes = Record<string, Record<string, Map<string, number>>>;

/** RFC 4180 CSV (quoted fields may hold commas, quotes and newlines) into rows of cells. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      if (row.length > 1 || row[0] !== '') rows.push(row);
      row = [];
      cell = '';
    } else cell += ch;
  }
  if (cell !== '' || row.length) rows.push([...row, cell]);
  return rows;
}

const truthy = (v: string) => (v === 'True' || v === 'true' ? 1 : v === 'False' || v === 'false' ? 0 : Number(v));

/** Problem id → score of one eval_detail.csv; an unreadable row is an error naming file and line. */
export function readDetail(file: string): Map<string, number> {
  const [head, ...rows] = parseCsv(readFileSync(file, 'utf8'));
  const id = head?.indexOf('id') ?? -1;
  const correct = head?.indexOf('correct') ?? -1;
  if (id < 0 || correct < 0) throw new Error(`${file}: no id and correct columns in the header`);
  const sums = new Map<string, { sum: number; n: number }>();
  rows.forEach((r, i) => {
    const score = truthy(r[correct] ?? '');
    if (!Number.isFinite(score)) throw new Error(`${file}:${i + 2}: correct: not a number or boolean: ${r[correct]}`);
    const s = sums.get(r[id]) ?? { sum: 0, n: 0 };
    s.sum += score;
    s.n += 1;
    sums.set(r[id], s);
  });
  return new Map([...sums].map(([k, s]) => [k, s.sum / s.n]));
}

/** Every model's per-problem outcomes in a run dir (empty when step 7 has not written any). */
export function readOutcomes(runDir: string): Outcomes {
  const out: Outcomes = {};
  const results = path.join(runDir, A.RESULTS_DIR);
  if (!existsSync(results)) return out;
  for (const label of readdirSync(results).sort()) {
    const dir = path.join(results, label);
    for (const set of existsSync(dir) ? readdirSync(dir).sort() : []) {
      const file = path.join(dir, set, 'eval_detail.csv');
      if (existsSync(file)) (out[label] ??= {})[set] = readDetail(file);
    }
  }
  return out;
}

export interface Comparison {
  a: string;
  b: string;
  /** sets both models were evaluated on, pooled */
  sets: string[];
  counts: PairCounts;
  /** McNemar's exact two-sided p */
  p: number;
  accA: Interval;
  accB: Interval;
  /** A − B, paired bootstrap */
  diff: Interval;
}

/** The paired columns of A and B: the problems (set/id) both have, in a stable order. */
export function pairedScores(outcomes: Outcomes, a: string, b: string) {
  const sets = Object.keys(outcomes[a] ?? {})
    .filter((s) => outcomes[b]?.[s])
    .sort();
  const xa: number[] = [];
  const xb: number[] = [];
  for (const set of sets) {
    const ma = outcomes[a][set];
    const mb = outcomes[b][set];
    for (const id of [...ma.keys()].sort()) {
      const vb = mb.get(id);
      if (vb === undefined) continue;
      xa.push(ma.get(id)!);
      xb.push(vb);
    }
  }
  return { sets, a: xa, b: xb };
}

export function compare(outcomes: Outcomes, a: string, b: string, opts?: BootstrapOptions): Comparison | undefined {
  const s = pairedScores(outcomes, a, b);
  if (!s.a.length) return undefined;
  const counts = pairCounts(s.a, s.b);
  return {
    a,
    b,
    sets: s.sets,
    counts,
    p: mcnemarExact(counts.onlyA, counts.onlyB),
    accA: accuracyInterval(s.a, opts),
    accB: accuracyInterval(s.b, opts),
    diff: differenceInterval(s.a, s.b, opts),
  };
}

/** The baseline labels WMSS is compared with in this run: m1, and continued SFT when present. */
export function comparisonsOf(outcomes: Outcomes): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  if (!outcomes.wmss) return pairs;
  const csft = CONTINUED_SFT_LABELS.find((l) => outcomes[l]);
  if (csft) pairs.push(['wmss', csft]);
  if (outcomes.m1) pairs.push(['wmss', 'm1']);
  return pairs;
}

const pct = (v: number) => `${(100 * v).toFixed(1)} %`;
const pts = (v: number) => `${v >= 0 ? '+' : '−'}${Math.abs(100 * v).toFixed(1)}`;
export const pValue = (p: number) => (p < 0.0001 ? 'p < 0.0001' : `p = ${p.toPrecision(2)}`);

/**
 * The outcome in one sentence that claims no more than the test shows: a significant difference
 * is stated for these problems and this run only; no significant difference is not equality.
 */
export function outcomeSentence(c: Comparison, names: Record<string, string> = {}, alpha = 0.05): string {
  const na = names[c.a] ?? c.a;
  const nb = names[c.b] ?? c.b;
  const figures = `${na} ${pct(c.accA.estimate)} [${pct(c.accA.low)}, ${pct(c.accA.high)}], ${nb} ${pct(c.accB.estimate)} [${pct(c.accB.low)}, ${pct(c.accB.high)}], difference ${pts(c.diff.estimate)} points [${pts(c.diff.low)}, ${pts(c.diff.high)}] (95 % bootstrap intervals), McNemar exact ${pValue(c.p)} on ${c.counts.onlyA + c.counts.onlyB} discordant problems`;
  if (c.p >= alpha)
    return `No significant difference between ${na} and ${nb} at n = ${c.counts.n} problems (${figures}); this does not show that they are equally good.`;
  const dir = c.diff.estimate > 0 ? 'higher' : 'lower';
  return `${na} scored significantly ${dir} than ${nb} at n = ${c.counts.n} problems (${figures}); this holds for these problems and this run (one seed) only.`;
}
