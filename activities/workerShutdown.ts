/**
 * Spot and preemption: what a kernel step does when its worker is told to stop (SIGTERM to the
 * worker process, as a spot reclaim or a rolling restart sends it).
 *
 * The SDK tells the running activities of a worker that shuts down by cancelling them at once
 * (the Worker's own shutdownGraceTime stays 0: with a grace there the kernel would train on,
 * unaware, until the grace ran out). The kernel bridge turns that cancellation into SIGTERM to the
 * kernel, which saves a checkpoint at the step it is on and exits; this module gives that a grace
 * of its own (WMSS_WORKER_SHUTDOWN_GRACE_SECONDS, `wmss worker gpu --shutdown-grace`, default
 * 120 s: longer than a checkpoint save) before SIGKILL, and reports the attempt as the retryable
 * WorkerShutdown failure. The server retries it at once on another worker (no heartbeat timeout
 * to wait for), and the retry resumes from the checkpoint just saved.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { ErrorTypes } from '../pipeline/errors';
import type { StepProgress } from '../pipeline/steps';

export const DEFAULT_SHUTDOWN_GRACE_S = 120;
/** Kill grace of a kernel whose activity was cancelled for any other reason (`wmss cancel`, pause). */
export const CANCEL_GRACE_MS = 120_000;

/** Seconds a kernel may take to checkpoint after its worker got SIGTERM. */
export function shutdownGraceMs(env: NodeJS.ProcessEnv = process.env): number {
  const s = Number(env.WMSS_WORKER_SHUTDOWN_GRACE_SECONDS);
  return env.WMSS_WORKER_SHUTDOWN_GRACE_SECONDS && Number.isFinite(s) && s > 0
    ? s * 1000
    : DEFAULT_SHUTDOWN_GRACE_S * 1000;
}

/** Whether the current activity was cancelled because its worker is shutting down. */
export function cancelledByShutdown(): boolean {
  try {
    return Context.current().cancellationDetails?.workerShutdown === true;
  } catch {
    return false; // not inside an activity
  }
}

/** The kill grace for a kernel's cancellation: the shutdown grace when the worker is stopping. */
export function killGraceFor(): number {
  return cancelledByShutdown() ? shutdownGraceMs() : CANCEL_GRACE_MS;
}

/**
 * A kernel step cancelled by its worker's shutdown fails as WorkerShutdown (retryable), not as a
 * cancellation: the run goes on, on another worker. Anything else passes through unchanged.
 */
export function asShutdownFailure(err: unknown, stepId: string, progress?: StepProgress): unknown {
  if (!(err instanceof CancelledFailure) || !cancelledByShutdown()) return err;
  const saved = progress?.lastCheckpoint;
  return ApplicationFailure.create({
    type: ErrorTypes.WorkerShutdown,
    message: `step ${stepId}: its worker got SIGTERM and is shutting down; ${saved ? `the kernel saved checkpoint ${saved.step} (${saved.path})` : 'no checkpoint was saved'}; retried on another worker`,
    details: [progress ?? null],
  });
}
