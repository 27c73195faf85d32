/**
 * The two activities behind run alerts (pipeline/notify.ts, workflows/alerts.ts), on the control
 * worker: posting one alert to its webhook, and finding the steps of a run that made no progress
 * for a while. Both only read: the workflow decides what to alert.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, defaultPayloadConverter } from '@temporalio/common';
import { ErrorTypes } from '../pipeline/errors';
import { alertBody, type Alert, type AlertTarget } from '../pipeline/notify';
import { temporalTarget, webUiLink } from '../temporal/connection';

/** A POST that takes longer than this counts as failed (the activity is retried with backoff). */
const POST_TIMEOUT_MS = 15_000;

export interface AlertActivities {
  deliverAlert(input: { alert: Alert; target: AlertTarget }): Promise<{ status: number }>;
  findStalledSteps(input: StallQuery): Promise<StalledStep[]>;
}

export interface StallQuery {
  workflowId: string;
  runId: string;
  stalledAfterSeconds: number;
}

export interface StalledStep {
  stepId: string;
  attempt: number;
  /** ISO time of its last progress (or its start); the same value while it stays stalled. */
  since: string;
}

/** The run's Web UI page, on the server this worker talks to (WMSS_UI_URL overrides the UI's address). */
function runPage(alert: Alert): string {
  const target = temporalTarget();
  try {
    target.namespace = Context.current().info.workflowNamespace ?? target.namespace;
  } catch {
    // outside an activity (unit tests): the worker's namespace
  }
  return `${webUiLink(alert.workflowId, target)}/${encodeURIComponent(alert.runId)}`;
}

/**
 * Posts one alert. Any answer but 2xx, a refused connection or a timeout throws a retryable
 * failure: the workflow's retry policy (backoff) tries again, and a run never fails because its
 * alerts cannot be delivered.
 */
export async function deliverAlert({
  alert,
  target,
}: {
  alert: Alert;
  target: AlertTarget;
}): Promise<{ status: number }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  // the token lives in this worker's environment only: never in the config, the input or the history
  const token = process.env[target.tokenEnv];
  if (token) headers.authorization = `Bearer ${token}`;
  let response: Response;
  try {
    response = await fetch(target.webhook, {
      method: 'POST',
      headers,
      body: JSON.stringify(alertBody(alert, target.format, runPage(alert))),
      signal: AbortSignal.timeout(POST_TIMEOUT_MS),
    });
  } catch (err) {
    throw ApplicationFailure.retryable(
      `alert "${alert.event}" of run ${alert.runName}: cannot reach ${target.webhook}: ${(err as Error).message}`,
      ErrorTypes.AlertNotDelivered,
    );
  }
  await response.arrayBuffer().catch(() => undefined); // drain: let the connection close
  if (!response.ok)
    throw ApplicationFailure.retryable(
      `alert "${alert.event}" of run ${alert.runName}: ${target.webhook} answered ${response.status}`,
      ErrorTypes.AlertNotDelivered,
    );
  return { status: response.status };
}

type Timestamp = { seconds?: unknown; nanos?: number | null } | null | undefined;
const msOf = (ts: Timestamp) => (ts ? Number(ts.seconds ?? 0) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6) : 0);

/** The `updatedAt` of the StepProgress in a heartbeat, which moves only when the step progresses. */
function progressTime(payloads: { payloads?: unknown[] | null } | null | undefined): number {
  const first = payloads?.payloads?.[0];
  if (!first) return 0;
  try {
    const details = defaultPayloadConverter.fromPayload<{ updatedAt?: unknown } | undefined>(first);
    const ms = typeof details?.updatedAt === 'string' ? Date.parse(details.updatedAt) : NaN;
    return Number.isFinite(ms) ? ms : 0;
  } catch {
    return 0;
  }
}

/**
 * The running steps (pending activities) of a run whose last progress is older than
 * stalledAfterSeconds. Progress is the heartbeat's `updatedAt` (a kernel's progress line, a CPU
 * step's count), else the attempt's start; a step no worker has started counts from when it was
 * scheduled, so a run that waits for a worker that never comes is stalled too.
 */
export async function findStalledSteps(query: StallQuery): Promise<StalledStep[]> {
  const handle = Context.current().client.workflow.getHandle(query.workflowId, query.runId);
  const { raw } = await handle.describe();
  const now = Date.now();
  const stalled: StalledStep[] = [];
  for (const pending of raw.pendingActivities ?? []) {
    const since = Math.max(
      progressTime(pending.heartbeatDetails),
      msOf(pending.lastStartedTime),
      pending.lastStartedTime ? 0 : msOf(pending.scheduledTime),
    );
    if (since > 0 && since <= now && now - since > query.stalledAfterSeconds * 1000)
      stalled.push({
        stepId: pending.activityId ?? '?',
        attempt: pending.attempt ?? 1,
        since: new Date(since).toISOString(),
      });
  }
  return stalled;
}

export function alertActivities(): AlertActivities {
  return { deliverAlert, findStalledSteps };
}
