/** `wmss status` / `wmss watch`: per-step state from the workflow's progress query plus heartbeats. */
import type { Client } from '@temporalio/client';
import { progressQuery, type PipelineProgress, type StepStatus } from '../../pipeline/workflowApi';
import type { StepId, StepProgress } from '../../pipeline/steps';
import {
  formatDuration,
  pipelineEta,
  progressRate,
  stepRemainingMs,
  type PipelineEta,
  type ProgressSamples,
} from './eta';
import { tsToMs } from '@temporalio/common/lib/time';
import { progressFromHistory, type HistoryProgress } from './historyProgress';
import { formatFailure, type RunFailure } from './failure';
import { table } from './resolveRun';

export interface ActivityBeat {
  stepId: string;
  activityType: string;
  attempt: number;
  details?: StepProgress;
  lastFailure?: string;
  /** started: a worker has the task; scheduled: waiting for a worker (or for the next retry). */
  state: 'scheduled' | 'started' | 'other';
  /** Activity pause (`temporal activity pause`, Web UI): paused, or asked to pause and still stopping. */
  pause?: 'paused' | 'pausing';
  /** ms since the epoch; undefined when there was none. */
  lastHeartbeatAt?: number;
  lastStartedAt?: number;
  scheduledAt?: number;
  nextAttemptAt?: number;
  worker?: string;
}

export interface RunSnapshot {
  workflowId: string;
  progress: PipelineProgress;
  /** Latest heartbeat of each running activity; the workflow uses the step id as activity id. */
  heartbeats: ActivityBeat[];
  workflowStatus: string;
  /** Tracker → run URL (or why it could not be reached), from the workflow memo (docs/tracking.md). */
  tracking?: Record<string, string | null>;
  /** The workflow's own failure (it may have failed before any step ran). */
  failure?: RunFailure;
  /** The workflow's input is not a run config. */
  inputProblem?: string;
  /** When this snapshot was taken (ms since the epoch). */
  at: number;
}

const msOf = (ts: Parameters<typeof tsToMs>[0] | undefined | null) => (ts ? tsToMs(ts) : undefined);

export async function snapshotRun(client: Client, workflowId: string): Promise<RunSnapshot> {
  const handle = client.workflow.getHandle(workflowId);
  const description = await handle.describe();
  // A running workflow answers the query; an ended one is read from its history (no worker needed).
  const full: HistoryProgress =
    description.status.name === 'RUNNING'
      ? await handle.query(progressQuery)
      : await progressFromHistory(client, workflowId, description.status.name, description.memo);
  const { failure, inputProblem, ...progress } = full;
  const pending = description.raw.pendingActivities ?? [];
  const heartbeats = pending.map((a): ActivityBeat => {
    const payload = a.heartbeatDetails?.payloads?.[0];
    const details = payload
      ? client.options.loadedDataConverter.payloadConverter.fromPayload<StepProgress>(payload)
      : undefined;
    // PendingActivityState: 1 scheduled, 2 started, 4 paused, 5 pause requested (still running)
    const code = Number(a.state);
    const state = code === 1 ? 'scheduled' : code === 2 || code === 5 ? 'started' : 'other';
    const pause = code === 4 ? 'paused' : code === 5 ? 'pausing' : a.paused ? 'paused' : undefined;
    return {
      stepId: a.activityId ?? '',
      activityType: a.activityType?.name ?? '?',
      attempt: a.attempt ?? 1,
      details,
      lastFailure: a.lastFailure?.message ?? undefined,
      state,
      lastHeartbeatAt: msOf(a.lastHeartbeatTime),
      lastStartedAt: msOf(a.lastStartedTime),
      scheduledAt: msOf(a.scheduledTime),
      nextAttemptAt: msOf(a.nextAttemptScheduleTime),
      worker: a.lastWorkerIdentity || undefined,
      ...(pause && { pause }),
    };
  });
  markPaused(progress, heartbeats);
  return {
    workflowId,
    progress,
    heartbeats,
    workflowStatus: description.status.name,
    ...(description.memo?.tracking ? { tracking: description.memo.tracking as Record<string, string | null> } : {}),
    ...(failure && { failure }),
    ...(inputProblem && { inputProblem }),
    at: Date.now(),
  };
}

/** A paused activity is still pending to the workflow, which reports its step running: say paused. */
export function markPaused(progress: PipelineProgress, heartbeats: ActivityBeat[]): void {
  for (const step of progress.steps) {
    const beat = heartbeats.find((h) => h.stepId === step.id);
    if (step.state === 'running' && beat?.pause === 'paused') step.state = 'paused';
  }
}

/** A step's worker has not reported for this long: worth saying (heartbeats come every few seconds). */
const QUIET_MS = 20_000;

/**
 * What a running step is waiting for, when it is not simply making progress: a worker to take it
 * (none polls its queue, or the one that had it died and the heartbeat timeout has not yet let
 * the server retry it), or its next retry. Without this `watch` is silent for the whole heartbeat
 * timeout after a worker dies.
 */
export function liveness(beat: ActivityBeat | undefined, now: number): string {
  if (!beat) return '';
  if (beat.pause === 'pausing') return 'pause requested: the kernel saves a checkpoint and stops';
  const ago = (t: number) => formatDuration(Math.max(0, now - t));
  const after = beat.lastFailure ? ` after: ${beat.lastFailure.split('\n')[0]}` : '';
  if (beat.state === 'scheduled') {
    if (beat.nextAttemptAt && beat.nextAttemptAt > now)
      return `attempt ${beat.attempt} in ${formatDuration(beat.nextAttemptAt - now)}${after}`;
    const since = beat.nextAttemptAt ?? beat.scheduledAt;
    return `waiting for a worker${since ? ` for ${ago(since)}` : ''} (attempt ${beat.attempt})${after}`;
  }
  if (beat.state === 'started') {
    const last = beat.lastHeartbeatAt ?? beat.lastStartedAt;
    if (last !== undefined && now - last > QUIET_MS)
      return `last heartbeat ${ago(last)} ago${beat.worker ? ` from ${beat.worker}` : ''}: the worker may be gone; the step is retried once its heartbeat timeout passes (attempt ${beat.attempt})`;
  }
  return '';
}

export function describeProgress(p?: StepProgress): string {
  if (!p) return '';
  if (!p.total) return p.phase ?? '';
  const pct = Math.floor((100 * p.done) / p.total);
  const parts = [`${p.done}/${p.total} ${p.unit} (${pct}%)`];
  if (p.loss !== undefined) parts.push(`loss ${p.loss.toFixed(4)}`);
  if (p.tokensPerS !== undefined) parts.push(`${Math.round(p.tokensPerS)} tok/s`);
  if (p.detail) parts.push(p.detail);
  if (p.lastCheckpoint) parts.push(`ckpt ${p.lastCheckpoint.step}`);
  return parts.join(' · ');
}

/** Remaining ms per running step and for the pipeline, from a snapshot and the samples watch has seen. */
export function estimates(
  s: RunSnapshot,
  samples: Partial<Record<string, ProgressSamples>> = {},
): { steps: Partial<Record<StepId, number | undefined>>; pipeline?: PipelineEta } {
  const steps: Partial<Record<StepId, number | undefined>> = {};
  for (const step of s.progress.steps) {
    if (step.state !== 'running') continue;
    const beat = s.heartbeats.find((h) => h.stepId === step.id)?.details;
    steps[step.id] = stepRemainingMs(beat, progressRate(beat, samples[step.id], step.startedAt), s.at);
  }
  return { steps, pipeline: s.progress.status === 'running' ? pipelineEta(s.progress.steps, steps, s.at) : undefined };
}

export function formatPipelineEta(eta: PipelineEta | undefined): string {
  return eta ? `${eta.lowerBound ? '≥ ' : ''}${formatDuration(eta.remainingMs)}` : '';
}

function stepTime(step: StepStatus, now: number): string {
  if (!step.startedAt) return '';
  const end = step.finishedAt ? Date.parse(step.finishedAt) : now;
  return formatDuration(end - Date.parse(step.startedAt));
}

/** One line per tracker of the run: its run URL (MLflow, W&B). */
export function trackingLines(tracking: RunSnapshot['tracking']): string {
  return Object.entries(tracking ?? {})
    .map(([name, url]) => `\n${name} ${url ?? '(no URL)'}`)
    .join('');
}

/** The compact table of `wmss status` (and the last screen of `wmss watch`). */
export function renderSnapshot(s: RunSnapshot, samples: Partial<Record<string, ProgressSamples>> = {}): string {
  const est = estimates(s, samples);
  const eta = formatPipelineEta(est.pipeline);
  const head = `run ${s.progress.runName || '?'} (${s.workflowId}): ${s.progress.status}${s.workflowStatus !== 'RUNNING' ? ` (workflow ${s.workflowStatus.toLowerCase()})` : ''}${eta ? `, ETA ${eta}` : ''}\nrun dir ${s.progress.runDir || '?'}${trackingLines(s.tracking)}`;
  const rows = s.progress.steps.map((step) => {
    const beat = s.heartbeats.find((h) => h.stepId === step.id);
    let detail = '';
    if (step.state === 'running') {
      const left = est.steps[step.id];
      const waiting = liveness(beat, s.at);
      detail = [
        describeProgress(beat?.details),
        left !== undefined ? `ETA ${formatDuration(left)}` : '',
        waiting ||
          (beat && beat.attempt > 1
            ? `attempt ${beat.attempt}${beat.lastFailure ? ` after: ${beat.lastFailure.split('\n')[0]}` : ''}`
            : ''),
      ]
        .filter(Boolean)
        .join(' · ');
    } else if (step.state === 'paused') {
      const saved = beat?.details?.lastCheckpoint;
      detail = `${saved ? `checkpoint ${saved.step} saved · ` : ''}resumes from it on \`temporal activity unpause --workflow-id ${s.workflowId} --activity-id ${step.id}\``;
    } else if (step.error) {
      detail = `${step.error.type ?? 'error'}: ${step.error.message.split('\n')[0]}`;
    } else if (step.result?.cached) {
      detail = 'cache hit';
    }
    // "pending" promises a start that an ended run will never give
    const state = step.state === 'pending' && s.workflowStatus !== 'RUNNING' ? 'not run' : step.state;
    return [step.number, step.title, state, stepTime(step, s.at), detail];
  });
  const why = [s.inputProblem, s.failure ? `failed: ${formatFailure(s.failure)}` : ''].filter(Boolean).join('\n');
  return `${head}\n${table(['step', 'what', 'state', 'time', 'progress'], rows)}${why ? `\n${why}` : ''}`;
}

/** Exit status of `status` and `watch`: non-zero once the run has ended without its result. */
export function exitCodeOf(s: RunSnapshot): number {
  return s.workflowStatus === 'RUNNING' || s.workflowStatus === 'COMPLETED' ? 0 : 1;
}
