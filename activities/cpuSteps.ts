/** The CPU steps (3, 4, 5a, 6): file transforms run by the control worker. */
import { extractSubmodel } from './extract';
import { fuseModels } from '../steps/fuse/activity';
import { mergeAndWeight } from './merge';
import { snapshotBase } from './snapshot';

export function cpuSteps() {
  return { mergeAndWeight, snapshotBase, fuseModels, extractSubmodel };
}
