/**
 * `wmss schedule …`: scheduled retraining with Temporal Schedules. A schedule starts the same
 * pipeline workflow as `wmss start` with the config given at creation; Temporal names each run
 * `<workflow id>-<scheduled time>` and sets the search attributes TemporalScheduledById and
 * TemporalScheduledStartTime on it. The workflow resolves date templates in the config's paths
 * from that time and gives each scheduled run its own run dir (pipeline/runTemplates.ts).
 *
 * Defaults: overlap policy SKIP (a run still going makes the next one skip, never two trainings
 * on the same GPUs), pause on failure (a failed run pauses the schedule until `unpause`), and a
 * catch-up window of one day for actions missed while the server was down.
 */
import {
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleDescription,
  type ScheduleHandle,
} from '@temporalio/client';
import type { RunConfig } from '../../pipeline/config';
import { WmssBaseModel, WmssRunName, WmssStatus, WmssStep } from '../../pipeline/searchAttributes';
import { WORKFLOW_TYPE, workflowIdFor } from '../../pipeline/workflowApi';
import { table } from './resolveRun';

export const OVERLAP_POLICIES = [
  'SKIP',
  'BUFFER_ONE',
  'BUFFER_ALL',
  'CANCEL_OTHER',
  'TERMINATE_OTHER',
  'ALLOW_ALL',
] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

export interface CreateScheduleOptions {
  config: RunConfig;
  scheduleId?: string;
  cron?: string;
  /** An interval such as '1d', '6h', '30m', '2s'. */
  every?: string;
  overlap?: OverlapPolicy;
  pauseOnFailure?: boolean;
  catchupWindow?: string;
  paused?: boolean;
  note?: string;
}

export function parseOverlap(value: string | undefined): OverlapPolicy {
  const v = (value ?? 'SKIP').toUpperCase().replace(/-/g, '_') as OverlapPolicy;
  if (!OVERLAP_POLICIES.includes(v))
    throw new Error(`--overlap must be one of ${OVERLAP_POLICIES.join(', ')}, not "${value}"`);
  return v;
}

export function scheduleIdFor(runName: string): string {
  return workflowIdFor(runName);
}

export async function createSchedule(client: Client, o: CreateScheduleOptions): Promise<ScheduleHandle> {
  if (!o.cron === !o.every) throw new Error('give exactly one of --cron "<expression>" or --every <interval>');
  const scheduleId = o.scheduleId ?? scheduleIdFor(o.config.runName);
  return client.schedule.create({
    scheduleId,
    spec: o.cron ? { cronExpressions: [o.cron] } : { intervals: [{ every: o.every as `${number}s` }] },
    action: {
      type: 'startWorkflow',
      workflowType: WORKFLOW_TYPE,
      // Temporal appends the scheduled time: wmss-<runName>-2026-11-25T03:00:00Z.
      workflowId: workflowIdFor(o.config.runName),
      taskQueue: o.config.placement.controlQueue,
      args: [o.config],
      staticSummary: `WMSS scheduled run ${o.config.runName} (${o.config.baseModel})`,
      typedSearchAttributes: [
        { key: WmssRunName, value: o.config.runName },
        { key: WmssBaseModel, value: o.config.baseModel },
        { key: WmssStatus, value: 'running' },
        { key: WmssStep, value: '' },
      ],
    },
    policies: {
      overlap: ScheduleOverlapPolicy[o.overlap ?? 'SKIP'],
      pauseOnFailure: o.pauseOnFailure ?? true,
      catchupWindow: (o.catchupWindow ?? '1d') as `${number}d`,
    },
    state: {
      paused: o.paused ?? false,
      note: o.note ?? `wmss schedule create (${o.cron ? `cron ${o.cron}` : `every ${o.every}`})`,
    },
    memo: {
      spec: o.cron ? `cron ${o.cron}` : `every ${o.every}`,
      runName: o.config.runName,
      runDir: o.config.runDir,
      dataFile: o.config.dataFile,
    },
  });
}

/** A schedule id as given, else `wmss-<name>`. */
export async function scheduleHandle(client: Client, idOrName: string): Promise<ScheduleHandle> {
  const handle = client.schedule.getHandle(idOrName);
  try {
    await handle.describe();
    return handle;
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError) || idOrName.startsWith('wmss-')) throw err;
    const other = client.schedule.getHandle(scheduleIdFor(idOrName));
    await other.describe();
    return other;
  }
}

const when = (d: Date | undefined) => (d ? d.toISOString().replace('.000Z', 'Z') : '–');

/** How the schedule was asked for (kept in its memo, since the server turns cron into calendars), else its spec. */
function specText(d: Pick<ScheduleDescription, 'spec' | 'memo'>): string {
  if (typeof d.memo?.spec === 'string') return d.memo.spec;
  const parts: string[] = [];
  for (const i of d.spec.intervals ?? [])
    parts.push(`every ${i.every / 1000}s${i.offset ? ` offset ${i.offset / 1000}s` : ''}`);
  for (const c of d.spec.calendars ?? []) parts.push(`calendar ${JSON.stringify(c)}`);
  return parts.join('; ') || '(no times)';
}

export async function listSchedules(client: Client): Promise<string> {
  const rows: string[][] = [];
  for await (const s of client.schedule.list()) {
    if (s.action?.workflowType !== WORKFLOW_TYPE) continue;
    const last = s.info.recentActions[s.info.recentActions.length - 1];
    rows.push([
      s.scheduleId,
      s.spec ? specText({ spec: s.spec, memo: s.memo }) : '',
      s.state.paused ? 'paused' : 'active',
      when(s.info.nextActionTimes[0]),
      last ? last.action.workflow.workflowId : '–',
    ]);
  }
  if (!rows.length)
    return 'no wmssPipeline schedules (create one with `wmss schedule create --every 1d --config run.json`)';
  return table(['schedule', 'when', 'state', 'next run (UTC)', 'last run'], rows);
}

export async function describeSchedule(handle: ScheduleHandle): Promise<string> {
  const d = await handle.describe();
  const args = (d.action.args?.[0] ?? {}) as Partial<RunConfig>;
  const lines = [
    `schedule ${d.scheduleId}: ${d.state.paused ? 'PAUSED' : 'active'}${d.state.note ? ` (${d.state.note})` : ''}`,
    `  when          ${specText(d)}`,
    `  starts        ${d.action.workflowType} on queue ${d.action.taskQueue}, workflow id ${d.action.workflowId}-<scheduled time>`,
    `  run           ${args.runName ?? '?'}; run dir ${args.runDir ?? '?'} (+ /{datetime} unless it has a template); data ${args.dataFile ?? '?'}`,
    `  policies      overlap ${d.policies.overlap}, pause on failure ${d.policies.pauseOnFailure}, catch-up window ${Math.round(d.policies.catchupWindow / 1000)}s`,
    `  actions       ${d.info.numActionsTaken} taken, ${d.info.numActionsSkippedOverlap} skipped (overlap), ${d.info.numActionsMissedCatchupWindow} missed (catch-up window)`,
    `  running       ${d.info.runningActions.map((a) => a.workflow.workflowId).join(', ') || '–'}`,
    `  next          ${d.info.nextActionTimes.slice(0, 3).map(when).join(', ') || '–'}`,
    '  recent:',
    ...(d.info.recentActions.length
      ? d.info.recentActions.slice(-10).map((a) => `    ${when(a.scheduledAt)}  ${a.action.workflow.workflowId}`)
      : ['    –']),
  ];
  return lines.join('\n');
}
