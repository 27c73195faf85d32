/**
 * Every activity interface the workflow schedules: one function per name in the step table, the
 * placement question and the run dir lock. The workflow imports this file for types only; the
 * workers register the implementations (workers/createWorkers.ts, workers/startOnnxWorker.ts).
 */
import type { RunConfig } from '../pipeline/config';
import type { Rendezvous } from '../pipeline/groups';
import type { ActivityName, StepId, StepInput, StepResult } from '../pipeline/steps';
import type { SweepPointRecord } from '../pipeline/sweepApi';

export type { SweepPointRecord };

export type StepActivities = Record<ActivityName, (input: StepInput) => Promise<StepResult>>;
export type { StepInput, StepResult };

/** Asked by the workflow with local storage, to learn which host a free GPU worker is on. */
export interface PlacementActivities {
  workerHost(): Promise<string>;
  /** Asked on member 0's host queue before a multi-node group starts (activities/groupRendezvous.ts). */
  groupRendezvous(): Promise<Rendezvous>;
}

export interface LockInput {
  runDir: string;
  runName: string;
  /** The resolved config, saved as `.wmss/run-config.json` once the lock is held (for `wmss resume <run dir>`). */
  config?: RunConfig;
}

export interface LockResult {
  runDir: string;
  generation: number;
  host: string;
  tookOverFrom?: { workflowId: string; runId: string };
}

/** The run dir lock that brackets every run (activities/runLock.ts), on the control worker. */
export interface RunLockActivities {
  lockRunDir(input: LockInput): Promise<LockResult>;
  unlockRunDir(input: { runDir: string }): Promise<boolean>;
}

/** `wmss rerun`: the step manifests to remove before steps run again (activities/invalidateSteps.ts). */
export interface RunControlActivities {
  invalidateSteps(input: { runDir: string; steps: StepId[] }): Promise<string[]>;
}

/** A sweep point's run dir, seeded from an earlier point's with the steps the two share (activities/sweepActivities.ts). */
export interface SeedInput {
  from: string;
  to: string;
  steps: StepId[];
}

export interface SweepAggregate {
  sweepName: string;
  sweepDir: string;
  workflowId: string;
  shared: StepId[];
  points: SweepPointRecord[];
}

/** The sweep workflow's activities, on the control worker. */
export interface SweepActivities {
  seedPointRunDir(input: SeedInput): Promise<{ seeded: StepId[]; kept: StepId[] }>;
  aggregateSweep(input: SweepAggregate): Promise<string>;
}
