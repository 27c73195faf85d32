/**
 * The activity interface the workflow schedules, one function per name in the step table.
 * The workflow imports this file for types only; activities/index.ts implements it.
 */
import type { ActivityName, StepInput, StepResult } from '../pipeline/steps';

export type StepActivities = Record<ActivityName, (input: StepInput) => Promise<StepResult>>;
export type { StepInput, StepResult };

/** Asked by the workflow with local storage, to learn which host a free GPU worker is on. */
export interface PlacementActivities {
  workerHost(): Promise<string>;
}
