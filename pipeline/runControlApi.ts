/**
 * Run controls through Temporal (docs/operating.md#run-controls): the Updates, the query and the
 * signal that `wmss checkpoint` and `wmss rerun` use, shared by the workflow, the activities and
 * the client. Sandbox-safe: definitions and types only.
 *
 * Checkpoint now: the `checkpoint` Update records a request in the workflow; the activity of the
 * training step polls `controlRequests` (it has no other way to hear from its workflow while it
 * runs), asks its kernel for a checkpoint (SIGUSR1) and answers with the `checkpointSaved` signal;
 * the Update returns that answer.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { StepId } from './steps';

/** Steps whose kernels save checkpoints on request: the two trainings. */
export const CHECKPOINT_STEPS: readonly StepId[] = ['sft', 'joint'];

export interface CheckpointRequest {
  /** Unique within the run; the answer names it. */
  id: string;
  stepId: StepId;
}

export interface CheckpointAnswer {
  id: string;
  stepId: StepId;
  /** The complete checkpoint, absolute as the kernel wrote it. */
  path?: string;
  step?: number;
  /** Why no checkpoint came (the kernel ended first). */
  error?: string;
}

export interface CheckpointReply {
  stepId: StepId;
  /** The complete checkpoint directory (absolute; relative to the run dir when `final`). */
  path: string;
  /** The optimizer step it holds. */
  step: number;
  /** True when the step finished before the request was served: the answer is its final checkpoint. */
  final: boolean;
}

export interface RerunReply {
  /** The steps that will run again, in table order: the one asked for and every step after it. */
  steps: StepId[];
  /** What the invalidation removed or set aside (relative to the run dir). */
  invalidated: string[];
}

/** `wmss checkpoint <run> [--step 1|5b]`: the running training step (null: whichever runs) saves now; returns the checkpoint. */
export const checkpointUpdate = defineUpdate<CheckpointReply, [StepId | null]>('checkpoint');
/** `wmss rerun <run> <step>`: invalidate the step and its successors and run them again in this workflow. */
export const rerunUpdate = defineUpdate<RerunReply, [StepId]>('rerun');
/** The activity of `stepId` asks which checkpoint requests wait for it. */
export const controlRequestsQuery = defineQuery<CheckpointRequest[], [StepId]>('controlRequests');
/** The activity's answer to a checkpoint request. */
export const checkpointSavedSignal = defineSignal<[CheckpointAnswer]>('checkpointSaved');
