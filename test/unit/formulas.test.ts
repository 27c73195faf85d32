import { sampleWeights } from '../../activities/weights/formulas';

const f = (a: number[]) => Float64Array.from(a);
const w = (formula: 'repo' | 'paper', alpha = 0.1, beta = 0.8, gamma = 0.1) => ({ formula, alpha, beta, gamma });

describe('repo formula (per-term normalised, docs/method.md#the-repo-formula)', () => {
  it('matches a hand-computed case', () => {
    // H0 = [1,2,1], H1 = [0.5,2,2] → ΔH = [-0.5, 0, 1]; Z1 = 4, Z2 = 0.5, Z3 = 1
    // p0 = .1·1/4 + .8·.5/.5 = .825; p1 = .1·2/4 = .05; p2 = .1·1/4 + .1·1/1 = .125; Σ = 1
    const { p, uniformFallback } = sampleWeights(f([1, 2, 1]), f([0.5, 2, 2]), w('repo'));
    expect(Array.from(p)).toEqual([0.825, 0.05, 0.125].map((x) => expect.closeTo(x, 12)));
    expect(uniformFallback).toBe(false);
  });

  it('replaces a zero Σ by 1e-12 (no term blows up)', () => {
    // ΔH = [1, 1]: Z2 = 0 → 1e-12 but every [−ΔH]+ is 0. Z1 = 4, Z3 = 2:
    // p0 = .1·1/4 + .1·1/2 = .075, p1 = .1·3/4 + .1·1/2 = .125; normalised [.375, .625]
    const { p } = sampleWeights(f([1, 3]), f([2, 4]), w('repo'));
    expect(Array.from(p)).toEqual([expect.closeTo(0.375, 12), expect.closeTo(0.625, 12)]);
  });

  it('falls back to uniform when every weight is 0', () => {
    const { p, uniformFallback } = sampleWeights(f([0, 0, 0, 0]), f([0, 0, 0, 0]), w('repo'));
    expect(Array.from(p)).toEqual([0.25, 0.25, 0.25, 0.25]);
    expect(uniformFallback).toBe(true);
  });

  it('alpha = 0 with H0 only: uniform', () => {
    const { p, uniformFallback } = sampleWeights(f([1, 2]), f([1, 2]), w('repo', 0, 0.8, 0.2));
    expect(uniformFallback).toBe(true);
    expect(Array.from(p)).toEqual([0.5, 0.5]);
  });
});

describe('paper formula (v2 Eq. 9, docs/method.md#the-paper-formula)', () => {
  it('matches a hand-computed case', () => {
    // p ∝ .1·[−ΔH]+ + .8·H1 + .1·[ΔH]+ = [.05 + .4, 1.6, 1.6 + .1] = [.45, 1.6, 1.7]; Σ = 3.75
    const { p } = sampleWeights(f([1, 2, 1]), f([0.5, 2, 2]), w('paper'));
    expect(Array.from(p)).toEqual([0.12, 1.6 / 3.75, 1.7 / 3.75].map((x) => expect.closeTo(x, 12)));
  });

  it('falls back to uniform when H1 = 0 and ΔH = 0', () => {
    const { p, uniformFallback } = sampleWeights(f([0, 0]), f([0, 0]), w('paper'));
    expect(Array.from(p)).toEqual([0.5, 0.5]);
    expect(uniformFallback).toBe(true);
  });
});
