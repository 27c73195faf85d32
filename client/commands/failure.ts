/**
 * The workflow's own failure, as `status`, `watch` and `result` show it. A run can fail before
 * any step starts (the run dir lock is held, the config is invalid, the run dir is read-only):
 * then every step is still "pending" and only the workflow's failure says what happened. The
 * SDK wraps it (WorkflowFailedError → ApplicationFailure → ActivityFailure → ApplicationFailure);
 * users need the type, the message and the step, not "Workflow execution failed".
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancelledFailure,
  TerminatedFailure,
  TimeoutFailure,
  type ProtoFailure,
} from '@temporalio/common';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { STEPS } from '../../pipeline/steps';

export interface RunFailure {
  /** ApplicationFailure type (InvalidConfig, RunDirLocked, …), or Timeout / Terminated / Cancelled. */
  type: string;
  message: string;
  /** The step (or other activity) the failure came from, when it came from one. */
  step?: string;
}

/** Walks an error's cause chain: the outermost ApplicationFailure speaks for the run, the first activity names the step. */
export function unwrapFailure(err: unknown): RunFailure {
  let type: string | undefined;
  let message: string | undefined;
  let step: string | undefined;
  const seen = new Set<unknown>();
  for (let e: unknown = err; e instanceof Error && !seen.has(e); e = (e as Error & { cause?: unknown }).cause) {
    seen.add(e);
    if (e instanceof ApplicationFailure && type === undefined) {
      type = e.type ?? 'ApplicationFailure';
      message = e.message;
    } else if (e instanceof ActivityFailure && step === undefined) {
      const row = STEPS.find((s) => s.id === e.activityId);
      // other activities (the run dir lock) get SDK-numbered ids, which say nothing to a user
      step = row ? `step ${row.number} (${row.title})` : `activity ${e.activityType}`;
    } else if (
      type === undefined &&
      (e instanceof TimeoutFailure || e instanceof TerminatedFailure || e instanceof CancelledFailure)
    ) {
      type = e instanceof TimeoutFailure ? 'Timeout' : e instanceof TerminatedFailure ? 'Terminated' : 'Cancelled';
      message = e.message;
    }
  }
  if (type === undefined) {
    const innermost = [...seen].pop() as Error | undefined;
    type = innermost?.name ?? 'Error';
    message = innermost?.message ?? String(err);
  }
  return { type, message: message || '(no message)', ...(step && { step }) };
}

export function formatFailure(f: RunFailure): string {
  return `${f.type}: ${f.message}${f.step && !f.message.includes(f.step) ? ` (${f.step})` : ''}`;
}

/** The failure recorded in a closed workflow's history (failed, timed out or terminated), if any. */
export async function failureFromHistory(
  client: Client,
  events: {
    workflowExecutionFailedEventAttributes?: { failure?: ProtoFailure | null } | null;
    workflowExecutionTimedOutEventAttributes?: unknown;
    workflowExecutionTerminatedEventAttributes?: { reason?: string | null } | null;
  }[],
): Promise<RunFailure | undefined> {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    const failed = e.workflowExecutionFailedEventAttributes?.failure;
    if (failed)
      return unwrapFailure(
        client.options.loadedDataConverter.failureConverter.failureToError(
          failed,
          client.options.loadedDataConverter.payloadConverter,
        ),
      );
    if (e.workflowExecutionTimedOutEventAttributes)
      return { type: 'Timeout', message: 'the workflow ran past its execution timeout' };
    if (e.workflowExecutionTerminatedEventAttributes)
      return { type: 'Terminated', message: e.workflowExecutionTerminatedEventAttributes.reason || 'terminated' };
  }
  return undefined;
}

/** A run that ended without a result: `wmss result` and friends exit non-zero with this. */
export class RunFailedError extends Error {
  constructor(
    public readonly workflowId: string,
    public readonly failure: RunFailure,
  ) {
    super(`run ${workflowId} failed: ${formatFailure(failure)}`);
  }
}

/** Rethrows the SDK's WorkflowFailedError as what users need to read. */
export function explainWorkflowError(workflowId: string, err: unknown): never {
  if (err instanceof WorkflowFailedError) throw new RunFailedError(workflowId, unwrapFailure(err.cause ?? err));
  throw err;
}
