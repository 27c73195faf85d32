/**
 * Where a run's date templates take their time from (pipeline/runTemplates.ts): the scheduled
 * time that a Schedule records on the runs it starts (search attribute TemporalScheduledStartTime,
 * also set by `trigger` and `backfill`), or the workflow's start time. Both come from the
 * workflow's history, so replays resolve the same paths.
 */
import { workflowInfo } from '@temporalio/workflow';
import type { TemplateContext } from '../pipeline/runTemplates';
import { TemporalScheduledById, TemporalScheduledStartTime } from '../pipeline/searchAttributes';

export function templateContext(): TemplateContext {
  const info = workflowInfo();
  const scheduledAt = info.typedSearchAttributes.get(TemporalScheduledStartTime);
  const scheduledBy = info.typedSearchAttributes.get(TemporalScheduledById);
  return { time: scheduledAt ?? info.startTime, workflowId: info.workflowId, scheduled: Boolean(scheduledBy) };
}
