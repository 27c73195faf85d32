/** Step 4, snapshot of the base model (weak branch m0): table row. Sandbox-safe; no config section. */
import * as A from '../../pipeline/artifacts';
import type { StepRow } from '../../pipeline/steps';
import { CPU_RETRY, FILE_TIMEOUTS } from '../policies';

export const snapshot: StepRow = {
  id: 'snapshot', number: '4', title: 'snapshot of the base model (weak branch m0)', activity: 'snapshotBase', queue: 'cpu', needs: [],
  inputs: (c) => [c.baseModel], outputs: () => [A.STAGE0_DIR],
  timeouts: FILE_TIMEOUTS, retry: CPU_RETRY,
  code: { ts: ['steps/snapshot/definition.ts', 'activities/snapshot.ts'], kernel: [] },
};
