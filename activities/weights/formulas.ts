/**
 * Sample weights from the two entropies (docs/method.md#the-repo-formula and #the-paper-formula),
 * over the merged rows sorted by idx. With H0 = base (weak), H1 = m1 (strong), ΔH = H1 − H0:
 *   repo:  p = α·H0/ΣH0 + β·[−ΔH]+/Σ[−ΔH]+ + γ·[ΔH]+/Σ[ΔH]+   (each Σ → 1e-12 when exactly 0), clip ≥ 0, normalise
 *   paper: p ∝ α·[−ΔH]+ + β·H1 + γ·[ΔH]+, normalise
 * All-zero weights become uniform (as the original does), flagged so the stats can warn.
 */
import type { RunConfig } from '../../pipeline/config';

export type WeightingConfig = RunConfig['weighting'];

export interface SampleWeights {
  p: Float64Array;
  /** True when every weight was 0 and p is uniform instead. */
  uniformFallback: boolean;
}

const ZERO_SUM_REPLACEMENT = 1e-12;

/** Scale to sum 1 in place; all zeros → uniform. Returns whether it fell back to uniform. */
export function normaliseOrUniform(p: Float64Array): boolean {
  let sum = 0;
  for (let i = 0; i < p.length; i++) sum += p[i];
  if (!(sum > 0)) {
    p.fill(p.length ? 1 / p.length : 0);
    return true;
  }
  for (let i = 0; i < p.length; i++) p[i] /= sum;
  return false;
}

function repoWeights(h0: Float64Array, h1: Float64Array, w: WeightingConfig): Float64Array {
  const n = h0.length;
  let z1 = 0;
  let z2 = 0;
  let z3 = 0;
  for (let i = 0; i < n; i++) {
    const d = h1[i] - h0[i];
    z1 += h0[i];
    if (d < 0) z2 -= d;
    else if (d > 0) z3 += d;
  }
  if (z1 === 0) z1 = ZERO_SUM_REPLACEMENT;
  if (z2 === 0) z2 = ZERO_SUM_REPLACEMENT;
  if (z3 === 0) z3 = ZERO_SUM_REPLACEMENT;
  const p = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const d = h1[i] - h0[i];
    const v = (w.alpha * h0[i]) / z1 + (w.beta * (d < 0 ? -d : 0)) / z2 + (w.gamma * (d > 0 ? d : 0)) / z3;
    p[i] = v > 0 ? v : 0;
  }
  return p;
}

function paperWeights(h0: Float64Array, h1: Float64Array, w: WeightingConfig): Float64Array {
  const p = new Float64Array(h0.length);
  for (let i = 0; i < h0.length; i++) {
    const d = h1[i] - h0[i];
    const v = w.alpha * (d < 0 ? -d : 0) + w.beta * h1[i] + w.gamma * (d > 0 ? d : 0);
    p[i] = v > 0 ? v : 0;
  }
  return p;
}

export function sampleWeights(h0: Float64Array, h1: Float64Array, w: WeightingConfig): SampleWeights {
  if (h0.length !== h1.length) throw new Error(`entropy columns differ in length (${h0.length} vs ${h1.length})`);
  const p = w.formula === 'repo' ? repoWeights(h0, h1, w) : paperWeights(h0, h1, w);
  return { p, uniformFallback: normaliseOrUniform(p) };
}
