/** The sweep workflow's public surface (workflows/wmssSweep.ts): type name, id scheme, query, result. */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { RunStatus } from './searchAttributes';
import type { StepId } from './steps';

export const SWEEP_WORKFLOW_TYPE = 'wmssSweep';

export function sweepWorkflowIdFor(sweepName: string): string {
  return `wmss-sweep-${sweepName}`;
}

export interface SweepPointRecord {
  name: string;
  runName: string;
  runDir: string;
  workflowId: string;
  overrides: Record<string, unknown>;
  state: 'pending' | 'running' | 'completed' | 'failed' | 'cancelled';
  /** the steps seeded from earlier points (seededFrom: their names), and those that came back as cache hits */
  seeded?: StepId[];
  seededFrom?: string[];
  cached?: StepId[];
  error?: string;
}

export interface SweepProgress {
  sweepName: string;
  sweepDir: string;
  status: RunStatus;
  /** the steps every point shares (computed once, by the first point) */
  shared: StepId[];
  /** the override fields of the grid */
  keys: string[];
  points: SweepPointRecord[];
}

export interface SweepResult extends SweepProgress {
  /** <sweepDir>/sweep.json */
  aggregate: string;
}

export const sweepQuery = defineQuery<SweepProgress>('sweep');

/**
 * A point's run tells its sweep each step it has finished (completed or a cache hit, so its
 * manifest is committed): the sweep seeds the points that wait on those steps. Sent only by runs
 * started with the memo key SWEEP_PARENT_MEMO, so a run under any other parent sends nothing.
 */
export const stepFinishedSignal = defineSignal<[{ workflowId: string; stepId: StepId }]>('stepFinished');
export const SWEEP_PARENT_MEMO = 'sweepParent';
