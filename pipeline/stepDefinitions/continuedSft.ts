/**
 * Step 5c, the baseline arm: continued SFT of m1 at the cost of step 5b. Table row, the
 * `baseline` config section, and its kernel job (the joint kernel with a plain model instead of
 * the fused one). Sandbox-safe (the workflow loads the row); the activity is
 * activities/stepActivities/continuedSftActivity.ts.
 *
 * Equal cost by construction: the job is step 5b's (the `joint` section's hyper-parameters,
 * learning-rate schedule, seed, data order and loss tokens), only the model differs. With the
 * resampled set both train the same examples in the same order, so the optimizer steps and the
 * tokens match exactly; with the original set the steps are pinned to 5b's count.
 */
import { z } from 'zod';
import * as A from '../artifacts';
import type { RunConfig } from '../config';
import type { StepRow } from '../steps';
import { jointJob } from './joint';
import { GPU_RETRY, TRAINING_TIMEOUTS } from './policies';

export const BaselineConfig = z
  .object({
    sft: z
      .boolean()
      .default(false)
      .describe(
        'Add step 5c, continued SFT of m1 with the compute of step 5b (same data, optimizer steps, tokens and learning-rate schedule: the joint section), and evaluate it in step 7 beside the base model, m1 and WMSS.',
      ),
    data: z
      .enum(['resampled', 'original'])
      .default('resampled')
      .describe(
        "Step 5c's training set: resampled = step 3's resample, the very examples 5b trains on (equal steps and tokens); original = the data file once over, for 5b's number of optimizer steps.",
      ),
  })
  .strict();

/**
 * The joint settings that do not touch a plain model (λ, freezing the weak branch): step 5c's
 * cache key leaves them out, so a λ sweep trains 5c once per seed (pipeline/sweep.ts).
 */
export const CONTINUED_SFT_IGNORES = ['fusionLambda', 'freezeWeak'] as const;

/** The name of step 5c's model in step 7's results (results/<label>/) and in the accuracy table. */
export const CONTINUED_SFT_LABEL = 'continued_sft';

/** The job of step 5c: step 5b's, with m1 (model_path) in place of the fused model. */
export function continuedSftJob(
  config: RunConfig,
  joint: RunConfig['joint'],
  at: { modelPath: string; indicesFile: string; dataFile: string; outputDir: string },
) {
  const job = jointJob(config, joint, { fusedDir: '', ...at });
  // freezing the weak branch means nothing without one; the strong branch always trains
  return { ...job, fused_dir: null, model_path: at.modelPath, freeze_weak: false };
}

export const continuedSft: StepRow = {
  id: 'continuedSft',
  number: '5c',
  title: 'continued SFT of m1 (baseline arm)',
  activity: 'trainContinuedSft',
  queue: 'gpu',
  // merge: the resample 5b trains on (or, with data original, its size: 5b's step count)
  needs: ['sft', 'merge'],
  inputs: (c) => [
    `${A.STAGE1_DIR}/checkpoint-N`,
    ...(c.baseline.data === 'resampled' ? [A.RESAMPLED_POSITIONS] : []),
    c.dataFile,
  ],
  outputs: () => [`${A.CONTINUED_SFT_DIR}/checkpoint-N`],
  timeouts: TRAINING_TIMEOUTS,
  retry: GPU_RETRY,
  when: (c) => c.baseline.sft,
  whenText: 'baseline.sft',
  code: {
    ts: [
      'pipeline/stepDefinitions/continuedSft.ts',
      'activities/stepActivities/continuedSftActivity.ts',
      'activities/stepActivities/trainingRuntime.ts',
    ],
    kernel: ['kernels/wmss_kernels/joint.py', 'kernels/wmss_kernels/train_loop.py'],
  },
};
