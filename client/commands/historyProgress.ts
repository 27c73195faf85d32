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

const iso = (ts: Parameters<typeof tsToMs>[0]) => new Date(tsToMs(ts)).toISOString();

export async function progressFromHistory(client: Client, workflowId: string, workflowStatus: string, memo?: Record<string, unknown>): Promise<PipelineProgress> {
  const handle = client.workflow.getHandle(workflowId);
  const history = await handle.fetchHistory();
  const convert = client.options.loadedDataConverter.payloadConverter;
  const steps = new Map<StepId, StepStatus>();
  const addSteps = (rows: readonly (typeof STEPS)[number][]) => rows.forEach((r) => steps.set(r.id, { id: r.id, number: r.number, title: r.title, state: 'pending' }));
  const bySchedule = new Map<string, StepStatus>();
  let runName = '';
  let runDir = '';
  for (const e of history.events ?? []) {
    const id = String(e.eventId);
    if (e.workflowExecutionStartedEventAttributes) {
      const payload = e.workflowExecutionStartedEventAttributes.input?.payloads?.[0];
      const input = payload ? (convert.fromPayload(payload) as { runName?: string; runDir?: string }) : {};
      runName = input.runName ?? '';
      runDir = input.runDir ?? '';
      // The steps this config runs (optional steps, e.g. ONNX exports, only when enabled).
      const parsed = RunConfig.safeParse(input);
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
        step.result = payload ? (convert.fromPayload(payload) as StepResult) : undefined;
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
        step.error = { type: failed.failure?.cause?.applicationFailureInfo?.type ?? failed.failure?.applicationFailureInfo?.type ?? undefined, message: failed.failure?.cause?.message ?? failed.failure?.message ?? 'failed' };
      }
    }
    const timedOut = e.activityTaskTimedOutEventAttributes;
    if (timedOut) {
      const step = bySchedule.get(String(timedOut.scheduledEventId));
      if (step) Object.assign(step, { state: 'failed', finishedAt: iso(e.eventTime), error: { type: 'TimedOut', message: timedOut.failure?.message ?? 'timed out' } });
    }
    const cancelled = e.activityTaskCanceledEventAttributes;
    if (cancelled) {
      const step = bySchedule.get(String(cancelled.scheduledEventId));
      if (step) Object.assign(step, { state: 'cancelled', finishedAt: iso(e.eventTime) });
    }
  }
  // The memo holds the run dir after date templates were resolved (pipeline/runTemplates.ts).
  const memoConfig = (memo?.config ?? {}) as { runDir?: string; runName?: string };
  const status = workflowStatus === 'COMPLETED' ? 'completed' : workflowStatus === 'CANCELLED' ? 'cancelled' : workflowStatus === 'RUNNING' ? 'running' : 'failed';
  return { runName: memoConfig.runName ?? runName, runDir: memoConfig.runDir ?? runDir, status, steps: [...steps.values()] };
}
