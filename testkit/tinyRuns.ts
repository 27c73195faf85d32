/**
 * Overrides of tinyRunConfig (testkit/harness.ts) for the operations suites (metrics, alerts,
 * worker versions), which need a whole run but none of its numbers: two optimizer steps per stage
 * and four eval rows, so a run takes a fraction of the pipeline suite's.
 */
import type { RunConfigInput } from '../pipeline/config';

const training = {
  lr: 3e-3,
  microBatch: 16,
  gradAccum: 1,
  maxLength: 96,
  maxSteps: 2,
  saveEvery: 2,
  gradientCheckpointing: false,
};

export const tinyOverrides: Partial<RunConfigInput> = {
  sft: training,
  joint: training,
};
