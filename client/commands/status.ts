/** `wmss status` / `wmss watch`: per-step state from the workflow's progress query plus heartbeats. */
import type { Client } from '@temporalio/client';
import { progressQuery, type PipelineProgress } from '../../pipeline/workflowApi';
import type { StepProgress } from '../../pipeline/steps';

export interface RunSnapshot {
  progress: PipelineProgress;
  /** Latest heartbeat of each running activity; the workflow uses the step id as activity id. */
  heartbeats: { stepId: string; activityType: string; attempt: number; details?: StepProgress; lastFailure?: string }[];
  workflowStatus: string;
}

export async function snapshotRun(client: Client, workflowId: string): Promise<RunSnapshot> {
  const handle = client.workflow.getHandle(workflowId);
  const [progress, description] = await Promise.all([handle.query(progressQuery), handle.describe()]);
  const pending = description.raw.pendingActivities ?? [];
  const heartbeats = await Promise.all(
    pending.map(async (a) => {
      const payload = a.heartbeatDetails?.payloads?.[0];
      const details = payload ? ((await client.options.loadedDataConverter.payloadConverter.fromPayload(payload)) as StepProgress) : undefined;
      return { stepId: a.activityId ?? '', activityType: a.activityType?.name ?? '?', attempt: a.attempt ?? 1, details, lastFailure: a.lastFailure?.message ?? undefined };
    }),
  );
  return { progress, heartbeats, workflowStatus: description.status.name };
}

export function describeProgress(p?: StepProgress): string {
  if (!p || !p.total) return '';
  const pct = Math.floor((100 * p.done) / p.total);
  const parts = [`${p.done}/${p.total} ${p.unit} (${pct}%)`];
  if (p.loss !== undefined) parts.push(`loss ${p.loss.toFixed(4)}`);
  if (p.tokensPerS !== undefined) parts.push(`${Math.round(p.tokensPerS)} tok/s`);
  if (p.lastCheckpoint) parts.push(`ckpt ${p.lastCheckpoint.step}`);
  return parts.join(' · ');
}

export function renderSnapshot(s: RunSnapshot): string {
  const lines = [`run ${s.progress.runName}: ${s.progress.status} (workflow ${s.workflowStatus.toLowerCase()})  dir ${s.progress.runDir}`];
  for (const step of s.progress.steps) {
    const running = s.heartbeats.find((h) => h.stepId === step.id);
    const extra = step.state === 'running' ? `${describeProgress(running?.details)}${running && running.attempt > 1 ? ` · attempt ${running.attempt}` : ''}` : step.error ? `${step.error.type ?? 'error'}: ${step.error.message.split('\n')[0]}` : '';
    lines.push(`  ${step.number.padEnd(3)} ${step.title.padEnd(52)} ${step.state.padEnd(10)} ${extra}`);
  }
  return lines.join('\n');
}
