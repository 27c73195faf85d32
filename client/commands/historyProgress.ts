/**
 * The progress of a run rebuilt from its event history: what `wmss status` shows for a run that
 * has ended (a query on a closed workflow needs a worker to replay it; the history does not).
 * Activity ids are step ids (workflows/wmssPipeline.ts), so each scheduled activity maps to a step.
 */
import type { Client } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';
import { RunConfig } from '../../pipeline/config';
import { activeSteps, STEPS, type StepId, type StepResult } from '../../pipeline/steps';
import type { PipelineProgress, StepStatus } from '../../pipeline/workflowApi';
import { failureFromHistory, type RunFailure } from './failure';

export interface HistoryProgress extends PipelineProgress {
  /** Why the workflow failed (its own failure, which may have no step). */
  failure?: RunFailure;
  /** Set when the workflow's input is not a run config (e.g. `null` sent with `temporal workflow start`). */
  inputProblem?: string;
}

const iso = (ts: Parameters<typeof tsToMs>[0]) => new Date(tsToMs(ts)).toISOString();

export async function progressFromHistory(
  client: Client,
  workflowId: string,
  workflowStatus: string,
  memo?: Record<string, unknown>,
): Promise<HistoryProgress> {
  const handle = client.workflow.getHandle(workflowId);
  const history = await handle.fetchHistory();
  const convert = client.options.loadedDataConverter.payloadConverter;
  const steps = new Map<StepId, StepStatus>();
  const addSteps = (rows: readonly (typeof STEPS)[number][]) =>
    rows.forEach((r) => steps.set(r.id, { id: r.id, number: r.number, title: r.title, state: 'pending' }));
  const bySchedule = new Map<string, StepStatus>();
  let runName = '';
  let runDir = '';
  let inputProblem: string | undefined;
  for (const e of history.events ?? []) {
    const id = String(e.eventId);
    if (e.workflowExecutionStartedEventAttributes) {
      const payload = e.workflowExecutionStartedEventAttributes.input?.payloads?.[0];
      const input: unknown = payload ? convert.fromPayload(payload) : undefined;
      // Anyone can start the workflow type (temporal CLI, other SDKs) with any input, even null.
      const fields =
        input !== null && typeof input === 'object' ? (input as { runName?: unknown; runDir?: unknown }) : {};
      runName = typeof fields.runName === 'string' ? fields.runName : '';
      runDir = typeof fields.runDir === 'string' ? fields.runDir : '';
      // The steps this config runs (optional steps, e.g. ONNX exports, only when enabled).
      const parsed = RunConfig.safeParse(input);
      if (!parsed.success)
        inputProblem = `the workflow's input is not a run config (${input === undefined ? 'no input' : input === null ? 'null' : Array.isArray(input) ? 'an array' : typeof input === 'object' ? 'an object that fails the schema' : typeof input})`;
      addSteps(parsed.success ? activeSteps(parsed.data) : STEPS.filter((r) => !r.when));
    }
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) {
      const step = steps.get(scheduled.activityId as StepId);
      if (step) {
        step.state = 'running';
        step.startedAt = iso(e.eventTime);
        bySchedule.set(id, step);
      }
    }
    const completed = e.activityTaskCompletedEventAttributes;
    if (completed) {
      const step = bySchedule.get(String(completed.scheduledEventId));
      if (step) {
        const payload = completed.result?.payloads?.[0];
        step.result = payload ? convert.fromPayload<StepResult>(payload) : undefined;
        step.state = step.result?.cached ? 'cached' : 'completed';
        step.finishedAt = iso(e.eventTime);
      }
    }
    const failed = e.activityTaskFailedEventAttributes;
    if (failed) {
      const step = bySchedule.get(String(failed.scheduledEventId));
      if (step) {
        step.state = 'failed';
        step.finishedAt = iso(e.eventTime);
        step.error = {
          type:
            failed.failure?.cause?.applicationFailureInfo?.type ??
            failed.failure?.applicationFailureInfo?.type ??
            undefined,
          message: failed.failure?.cause?.message ?? failed.failure?.message ?? 'failed',
        };
      }
    }
    const timedOut = e.activityTaskTimedOutEventAttributes;
    if (timedOut) {
      const step = bySchedule.get(String(timedOut.scheduledEventId));
      if (step)
        Object.assign(step, {
          state: 'failed',
          finishedAt: iso(e.eventTime),
          error: { type: 'TimedOut', message: timedOut.failure?.message ?? 'timed out' },
        });
    }
    const cancelled = e.activityTaskCanceledEventAttributes;
    if (cancelled) {
      const step = bySchedule.get(String(cancelled.scheduledEventId));
      if (step) Object.assign(step, { state: 'cancelled', finishedAt: iso(e.eventTime) });
    }
  }
  // The memo holds the run dir after date templates were resolved (pipeline/runTemplates.ts).
  const memoConfig = (memo?.config ?? {}) as { runDir?: string; runName?: string };
  const status =
    workflowStatus === 'COMPLETED'
      ? 'completed'
      : workflowStatus === 'CANCELLED'
        ? 'cancelled'
        : workflowStatus === 'RUNNING'
          ? 'running'
          : 'failed';
  const failure = status === 'failed' ? await failureFromHistory(client, history.events ?? []) : undefined;
  return {
    runName: memoConfig.runName ?? runName,
    runDir: memoConfig.runDir ?? runDir,
    status,
    steps: [...steps.values()],
    ...(failure && { failure }),
    ...(inputProblem && { inputProblem }),
  };
}

export interface StepSpan {
  /** When the step's activity was first scheduled (its first attempt). */
  startedAt: string;
  /** When its last attempt completed. */
  finishedAt: string;
  /** The attempt that completed (1 = no retry). */
  attempts: number;
}

type HistoryEvent = NonNullable<
  Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>['events']
>[number];

/**
 * Wall time of each completed step across all its attempts. A step's manifest is written by the
 * attempt that succeeded, so its timings miss the failed attempts and the retry back-off before
 * it; the history has one scheduled event for all attempts and the completion of the last.
 */
export function stepSpansFromHistory(events: readonly HistoryEvent[]): Partial<Record<StepId, StepSpan>> {
  const scheduled = new Map<string, { stepId: StepId; at: string }>();
  const attempts = new Map<string, number>();
  const spans: Partial<Record<StepId, StepSpan>> = {};
  for (const e of events) {
    const id = String(e.eventId);
    const s = e.activityTaskScheduledEventAttributes;
    if (s && STEPS.some((r) => r.id === s.activityId))
      scheduled.set(id, { stepId: s.activityId as StepId, at: iso(e.eventTime) });
    const started = e.activityTaskStartedEventAttributes;
    if (started) attempts.set(String(started.scheduledEventId), started.attempt ?? 1);
    const done = e.activityTaskCompletedEventAttributes;
    const first = done && scheduled.get(String(done.scheduledEventId));
    // keep the first scheduling of a step (a workflow does not schedule a finished step again)
    if (first && !spans[first.stepId])
      spans[first.stepId] = {
        startedAt: first.at,
        finishedAt: iso(e.eventTime),
        attempts: attempts.get(String(done.scheduledEventId)) ?? 1,
      };
  }
  return spans;
}
