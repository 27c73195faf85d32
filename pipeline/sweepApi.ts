/** The sweep workflow's public surface (workflows/wmssSweep.ts): type name, id scheme, query, result. */
import { defineQuery } from '@temporalio/workflow';
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
  /** the steps seeded from an earlier point (seededFrom), and those that came back as cache hits */
  seeded?: StepId[];
  seededFrom?: string;
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
