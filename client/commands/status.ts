/** `wmss status` / `wmss watch`: per-step state from the workflow's progress query plus heartbeats. */
import type { Client } from '@temporalio/client';
import { progressQuery, type PipelineProgress, type StepStatus } from '../../pipeline/workflowApi';
import type { StepId, StepProgress } from '../../pipeline/steps';
import { formatDuration, pipelineEta, progressRate, stepRemainingMs, type PipelineEta, type ProgressSamples } from './eta';
import { progressFromHistory } from './historyProgress';
import { table } from './resolveRun';

export interface RunSnapshot {
  workflowId: string;
  progress: PipelineProgress;
  /** Latest heartbeat of each running activity; the workflow uses the step id as activity id. */
  heartbeats: { stepId: string; activityType: string; attempt: number; details?: StepProgress; lastFailure?: string }[];
  workflowStatus: string;
  /** When this snapshot was taken (ms since the epoch). */
  at: number;
}

export async function snapshotRun(client: Client, workflowId: string): Promise<RunSnapshot> {
  const handle = client.workflow.getHandle(workflowId);
  const description = await handle.describe();
  // A running workflow answers the query; an ended one is read from its history (no worker needed).
  const progress = description.status.name === 'RUNNING' ? await handle.query(progressQuery) : await progressFromHistory(client, workflowId, description.status.name, description.memo);
  const pending = description.raw.pendingActivities ?? [];
  const heartbeats = await Promise.all(
    pending.map(async (a) => {
      const payload = a.heartbeatDetails?.payloads?.[0];
      const details = payload ? ((await client.options.loadedDataConverter.payloadConverter.fromPayload(payload)) as StepProgress) : undefined;
      return { stepId: a.activityId ?? '', activityType: a.activityType?.name ?? '?', attempt: a.attempt ?? 1, details, lastFailure: a.lastFailure?.message ?? undefined };
    }),
  );
  return { workflowId, progress, heartbeats, workflowStatus: description.status.name, at: Date.now() };
}

export function describeProgress(p?: StepProgress): string {
  if (!p) return '';
  if (!p.total) return p.phase ?? '';
  const pct = Math.floor((100 * p.done) / p.total);
  const parts = [`${p.done}/${p.total} ${p.unit} (${pct}%)`];
  if (p.loss !== undefined) parts.push(`loss ${p.loss.toFixed(4)}`);
  if (p.tokensPerS !== undefined) parts.push(`${Math.round(p.tokensPerS)} tok/s`);
  if (p.lastCheckpoint) parts.push(`ckpt ${p.lastCheckpoint.step}`);
  return parts.join(' · ');
}

/** Remaining ms per running step and for the pipeline, from a snapshot and the samples watch has seen. */
export function estimates(s: RunSnapshot, samples: Partial<Record<string, ProgressSamples>> = {}): { steps: Partial<Record<StepId, number | undefined>>; pipeline?: PipelineEta } {
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

/** The compact table of `wmss status` (and the last screen of `wmss watch`). */
export function renderSnapshot(s: RunSnapshot, samples: Partial<Record<string, ProgressSamples>> = {}): string {
  const est = estimates(s, samples);
  const eta = formatPipelineEta(est.pipeline);
  const head = `run ${s.progress.runName} (${s.workflowId}): ${s.progress.status}${s.workflowStatus !== 'RUNNING' ? ` (workflow ${s.workflowStatus.toLowerCase()})` : ''}${eta ? `, ETA ${eta}` : ''}\nrun dir ${s.progress.runDir}`;
  const rows = s.progress.steps.map((step) => {
    const beat = s.heartbeats.find((h) => h.stepId === step.id);
    let detail = '';
    if (step.state === 'running') {
      const left = est.steps[step.id];
      detail = [describeProgress(beat?.details), left !== undefined ? `ETA ${formatDuration(left)}` : '', beat && beat.attempt > 1 ? `attempt ${beat.attempt}${beat.lastFailure ? ` after: ${beat.lastFailure.split('\n')[0]}` : ''}` : ''].filter(Boolean).join(' · ');
    } else if (step.error) {
      detail = `${step.error.type ?? 'error'}: ${step.error.message.split('\n')[0]}`;
    } else if (step.result?.cached) {
      detail = 'cache hit';
    }
    return [step.number, step.title, step.state, stepTime(step, s.at), detail];
  });
  return `${head}\n${table(['step', 'what', 'state', 'time', 'progress'], rows)}`;
}
