/**
 * Step 5a, fuse m0 + m1 into one checkpoint: table row. Sandbox-safe; the activity is
 * ./activity.ts. Its one setting, λ, is joint.fusionLambda (../joint): written into the fused
 * config.json, from which the joint kernel reads it.
 */
import * as A from '../artifacts';
import type { StepRow } from '../steps';
import { CPU_RETRY, FILE_TIMEOUTS } from './policies';

export const fuse: StepRow = {
  id: 'fuse',
  number: '5a',
  title: 'fuse m0 + m1 into one checkpoint',
  activity: 'fuseModels',
  queue: 'cpu',
  needs: ['snapshot', 'sft'],
  inputs: () => [A.STAGE0_DIR, `${A.STAGE1_DIR}/checkpoint-N`],
  outputs: () => [A.FUSED_INIT_DIR],
  timeouts: FILE_TIMEOUTS,
  retry: CPU_RETRY,
  code: { ts: ['pipeline/stepDefinitions/fuse.ts', 'activities/stepActivities/fuseActivity.ts'], kernel: [] },
};
