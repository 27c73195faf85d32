/** Step 4, snapshot of the base model (weak branch m0): table row. Sandbox-safe; no config section. */
import * as A from '../artifacts';
import type { StepRow } from '../steps';
import { CPU_RETRY, FILE_TIMEOUTS } from './policies';

export const snapshot: StepRow = {
  id: 'snapshot',
  number: '4',
  title: 'snapshot of the base model (weak branch m0)',
  activity: 'snapshotBase',
  queue: 'cpu',
  needs: [],
  inputs: (c) => [c.baseModel],
  outputs: () => [A.STAGE0_DIR],
  timeouts: FILE_TIMEOUTS,
  retry: CPU_RETRY,
  code: { ts: ['pipeline/stepDefinitions/snapshot.ts', 'activities/stepActivities/snapshotActivity.ts'], kernel: [] },
};
