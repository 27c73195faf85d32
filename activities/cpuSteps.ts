/** The CPU steps (3, 4, 5a, 6): file transforms run by the control worker. */
import { extractSubmodel } from './stepActivities/extractActivity';
import { fuseModels } from './stepActivities/fuseActivity';
import { mergeAndWeight } from './stepActivities/mergeActivity';
import { snapshotBase } from './stepActivities/snapshotActivity';

export function cpuSteps() {
  return { mergeAndWeight, snapshotBase, fuseModels, extractSubmodel };
}
