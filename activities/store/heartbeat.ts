/**
 * Heartbeats that work inside and outside Temporal: the pure step code takes a `Heartbeat`
 * function, and tests call it without an activity context.
 */
import { Context } from '@temporalio/activity';

export type Heartbeat = (details: unknown) => void;

/** Heartbeat of the current activity, or nothing when not inside one (direct calls in tests). */
export const activityHeartbeat: Heartbeat = (details) => {
  let context: Context;
  try {
    context = Context.current();
  } catch {
    return;
  }
  context.heartbeat(details);
};

/** The current activity's cancellation (rejects when it is told to stop), or undefined outside an activity. */
export function activityCancelled(): Promise<never> | undefined {
  try {
    return Context.current().cancelled;
  } catch {
    return undefined;
  }
}

/**
 * Throws the cancellation (a CancelledFailure: cancel, worker shutdown, heartbeat timeout) once the
 * current activity has been told to stop. A CPU loop that never awaits a cancellable call (hashing,
 * parsing) calls it once per chunk; outside an activity it does nothing.
 */
export function throwIfCancelled(): void {
  let signal: AbortSignal;
  try {
    signal = Context.current().cancellationSignal;
  } catch {
    return;
  }
  if (signal.aborted) throw signal.reason;
}

/** Details in the shape of StepProgress (pipeline/steps.ts), so `wmss watch` shows any phase alike. */
export function progressDetails(
  done: number,
  total: number,
  unit: string,
): { done: number; total: number; unit: string; updatedAt: string } {
  return { done, total, unit, updatedAt: new Date().toISOString() };
}

/**
 * Repeats the latest details every `intervalMs` while a long call (a copy, a hash) keeps the
 * event loop free but reports nothing itself; silent until the first `update`.
 */
export class HeartbeatTicker {
  private last: unknown;
  private hasDetails = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly send: Heartbeat,
    intervalMs = 10_000,
  ) {
    this.timer = setInterval(() => {
      if (this.hasDetails) this.send(this.last);
    }, intervalMs);
    this.timer.unref();
  }

  update(details: unknown): void {
    this.last = details;
    this.hasDetails = true;
    this.send(details);
  }

  /** Stop repeating (e.g. while a kernel heartbeats on its own) until the next update. */
  quiet(): void {
    this.hasDetails = false;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
