/**
 * Step 3, merge entropies, sample weights, weighted resample: table row and the `weighting` and
 * `resample` config sections. Sandbox-safe; the activity is activities/stepActivities/mergeActivity.ts.
 */
import { z } from 'zod';
import * as A from '../artifacts';
import { MAX, seed } from '../configFields';
import type { StepRow } from '../steps';
import { CPU_RETRY, FILE_TIMEOUTS } from './policies';

export const WeightingConfig = z
  .object({
    formula: z
      .enum(['repo', 'paper'])
      .default('repo')
      .describe(
        'repo = per-term normalised mixture α·H0/ΣH0 + β·[−ΔH]+/Σ + γ·[ΔH]+/Σ (what the code ran); paper = p ∝ α·[−ΔH]+ + β·H1 + γ·[ΔH]+ (v2 Eq. 9). See docs/method.md#sample-weights-step-3.',
      ),
    alpha: z
      .number()
      .min(0)
      .max(MAX.weight)
      .default(0.1)
      .describe('repo: weight of base entropy; paper: weight of consolidation [−ΔH]+.'),
    beta: z
      .number()
      .min(0)
      .max(MAX.weight)
      .default(0.8)
      .describe("repo: weight of consolidation [−ΔH]+; paper: weight of the strong model's entropy."),
    gamma: z
      .number()
      .min(0)
      .max(MAX.weight)
      .default(0.1)
      .describe('Weight of regression repair [ΔH]+ (both formulas). Each weight at most 10^6.'),
  })
  .strict()
  .refine((w) => w.alpha + w.beta + w.gamma > 0, 'alpha + beta + gamma must be > 0');

export const ResampleConfig = z
  .object({
    multiplier: z
      .number()
      .positive()
      .max(MAX.multiplier)
      .default(1.0)
      .describe('Draws = floor(N × multiplier) (original: 1.0; at most 100, as every draw is held in memory).'),
    dedupe: z.boolean().default(false).describe('Remove duplicate draws (paper v2 WD-DS); the original keeps them.'),
    seed: seed().describe(
      "Seed of the weighted draw (xoshiro128** stream; not NumPy's, so indices differ from the original for the same seed).",
    ),
  })
  .strict();

export const merge: StepRow = {
  id: 'merge',
  number: '3',
  title: 'merge entropies, sample weights, weighted resample',
  activity: 'mergeAndWeight',
  queue: 'cpu',
  needs: ['entropy0', 'entropy1'],
  inputs: () => [A.ENTROPY_0, A.ENTROPY_1],
  outputs: () => [A.ENTROPY_MERGED, A.SAMPLE_WEIGHTS, A.RESAMPLED_POSITIONS, A.RESAMPLE_STATS],
  timeouts: FILE_TIMEOUTS,
  retry: CPU_RETRY,
  code: {
    ts: ['pipeline/stepDefinitions/merge.ts', 'activities/stepActivities/mergeActivity.ts', 'activities/weights/'],
    kernel: [],
  },
};
