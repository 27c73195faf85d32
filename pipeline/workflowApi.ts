/**
 * The workflow's public surface, shared by the workflow and the client: its type name,
 * id scheme, query and result shapes.
 */
import { defineQuery } from '@temporalio/workflow';
import type { RunConfig } from './config';
import type { StepId, StepResult } from './steps';

export const WORKFLOW_TYPE = 'wmssPipeline';

export function workflowIdFor(runName: string): string {
  return `wmss-${runName}`;
}

/** 'paused' is the client's word (client/commands/status.ts): the workflow sees a paused step as running. */
export type StepState = 'pending' | 'running' | 'paused' | 'completed' | 'cached' | 'failed' | 'cancelled';

export interface StepStatus {
  id: StepId;
  number: string;
  title: string;
  state: StepState;
  startedAt?: string;
  finishedAt?: string;
  result?: StepResult;
  error?: { type?: string; message: string };
}

export interface PipelineProgress {
  runName: string;
  runDir: string;
  status: 'running' | 'completed' | 'failed' | 'cancelled';
  steps: StepStatus[];
}

export interface PipelineResult {
  runName: string;
  runDir: string;
  steps: Record<string, StepResult>;
  /** pass@1 per model label and dataset, from step 7. */
  accuracy: Record<string, Record<string, number>>;
}

export const progressQuery = defineQuery<PipelineProgress>('progress');

export type { RunConfig };
