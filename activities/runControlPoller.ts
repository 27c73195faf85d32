/**
 * `wmss checkpoint`, activity side. A running activity cannot be sent anything by its workflow, so
 * the training activity asks: every few seconds (WMSS_CONTROL_POLL_MS, default 3000) it queries
 * `controlRequests` for requests addressed to its step, asks its kernel for a checkpoint
 * (activities/kernelSaveRequests.ts) and answers each request with the `checkpointSaved` signal.
 * A query that fails (no workflow worker for a moment, a server restart) is simply asked again.
 * Outside an activity (direct calls in tests) it does nothing.
 */
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { checkpointSavedSignal, controlRequestsQuery, type CheckpointAnswer } from '../pipeline/runControlApi';
import type { StepId } from '../pipeline/steps';
import type { RunningKernel } from './kernelSaveRequests';

export function controlPollMs(env: NodeJS.ProcessEnv = process.env): number {
  const ms = Number(env.WMSS_CONTROL_POLL_MS);
  return env.WMSS_CONTROL_POLL_MS && Number.isFinite(ms) && ms > 0 ? ms : 3000;
}

function workflowOfActivity(): { client: Client; workflowId: string; runId: string } | undefined {
  try {
    const ctx = Context.current();
    const wf = ctx.info.workflowExecution;
    return wf ? { client: ctx.client, workflowId: wf.workflowId, runId: wf.runId } : undefined;
  } catch {
    return undefined; // not inside an activity, or a worker without a client
  }
}

/** Serves checkpoint requests for `stepId` while `kernel` runs; stops by itself when it ends. */
export function serveCheckpointRequests(stepId: StepId, kernel: RunningKernel, everyMs = controlPollMs()): void {
  const wf = workflowOfActivity();
  if (!wf) return;
  const handle = wf.client.workflow.getHandle(wf.workflowId, wf.runId);
  const taken = new Set<string>();
  let polling = false;
  const answer = (a: CheckpointAnswer) => handle.signal(checkpointSavedSignal, a).catch(() => undefined);
  const poll = async () => {
    if (polling) return;
    polling = true;
    try {
      for (const request of await handle.query(controlRequestsQuery, stepId)) {
        if (taken.has(request.id)) continue;
        taken.add(request.id);
        kernel.requestCheckpoint().then(
          (c) => answer({ id: request.id, stepId, path: c.path, step: c.step }),
          (err: Error) => answer({ id: request.id, stepId, error: err.message }),
        );
      }
    } catch {
      // asked again at the next tick
    } finally {
      polling = false;
    }
  };
  const timer = setInterval(() => void poll(), everyMs);
  void kernel.ended.then(() => clearInterval(timer));
}
