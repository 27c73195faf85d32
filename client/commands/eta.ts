/**
 * Time estimates for `wmss watch` / `wmss status`: per running step from its progress rate, and
 * for the whole pipeline along the step graph (the latest-finishing path from now).
 *
 * A step that has not started is estimated from a step like it that has run (entropy of m1 from
 * entropy of the base; joint training from Stage-1 SFT ×2, as the fused model is two models; fuse
 * and extract from the snapshot). Without such a measurement the step counts as 0 and the
 * pipeline ETA is shown as a lower bound ("≥").
 */
import { STEPS, type StepId, type StepProgress } from '../../pipeline/steps';
import type { StepStatus } from '../../pipeline/workflowApi';

/** Progress samples of one step, oldest first, as `watch` saw them. */
export type ProgressSamples = { done: number; at: number }[];

/** Items per ms from the samples (first to last), else from the step's start; undefined if unknown. */
export function progressRate(
  p: StepProgress | undefined,
  samples: ProgressSamples = [],
  startedAt?: string,
): number | undefined {
  if (!p || !p.total) return undefined;
  if (samples.length >= 2) {
    const a = samples[0];
    const b = samples[samples.length - 1];
    if (b.at > a.at && b.done > a.done) return (b.done - a.done) / (b.at - a.at);
  }
  const since = startedAt ? Date.parse(startedAt) : NaN;
  const at = Date.parse(p.updatedAt);
  if (p.done > 0 && Number.isFinite(since) && at > since) return p.done / (at - since);
  return undefined;
}

/** Remaining ms of a running step, counted from its latest heartbeat. */
export function stepRemainingMs(
  p: StepProgress | undefined,
  rate: number | undefined,
  now: number,
): number | undefined {
  if (!p || !p.total || rate === undefined || rate <= 0) return undefined;
  const sinceBeat = Math.max(0, now - Date.parse(p.updatedAt));
  return Math.max(0, (p.total - p.done) / rate - sinceBeat);
}

/** Steps whose measured duration stands in for a step that has not run yet: [proxy, factor]. */
const PROXIES: Partial<Record<StepId, [StepId, number]>> = {
  entropy1: ['entropy0', 1],
  joint: ['sft', 2],
  fuse: ['snapshot', 2],
  extract: ['snapshot', 1],
  merge: ['snapshot', 1],
};

const finished = (s: StepStatus) => s.state === 'completed' || s.state === 'cached';

export interface PipelineEta {
  /** ms from now until the last step should finish. */
  remainingMs: number;
  /** True when some step on the way had no estimate (counted as 0). */
  lowerBound: boolean;
}

/**
 * ETA of the whole run: for each step, when it should finish = max(finish of what it needs) +
 * its remaining duration; the pipeline ends with the last one. Undefined when the run is over.
 */
export function pipelineEta(
  steps: StepStatus[],
  running: Partial<Record<StepId, number | undefined>>,
  now: number,
): PipelineEta | undefined {
  const byId = new Map(steps.map((s) => [s.id, s]));
  if (steps.every((s) => finished(s))) return undefined;
  if (steps.some((s) => s.state === 'failed' || s.state === 'cancelled')) return undefined;
  const measured = (id: StepId): number | undefined => {
    const s = byId.get(id);
    if (!s?.startedAt) return undefined;
    if (s.finishedAt && s.state === 'completed') return Date.parse(s.finishedAt) - Date.parse(s.startedAt);
    if (s.state === 'running' && running[id] !== undefined) return now - Date.parse(s.startedAt) + running[id];
    return undefined;
  };
  let lowerBound = false;
  const remaining = (id: StepId): number => {
    const s = byId.get(id)!;
    if (finished(s)) return 0;
    if (s.state === 'running') {
      const r = running[id];
      if (r === undefined) lowerBound = true;
      return r ?? 0;
    }
    const proxy = PROXIES[id];
    const base = proxy ? measured(proxy[0]) : undefined;
    if (base === undefined || !proxy) {
      lowerBound = true;
      return 0;
    }
    return base * proxy[1];
  };
  const finishAt = new Map<StepId, number>();
  const finish = (id: StepId): number => {
    const known = finishAt.get(id);
    if (known !== undefined) return known;
    // A step the config leaves out (not in the snapshot) counts as done for the steps that need it.
    const needs = (STEPS.find((r) => r.id === id)?.needs ?? []).filter((n) => byId.has(n));
    const at = Math.max(0, ...needs.map(finish)) + remaining(id);
    finishAt.set(id, at);
    return at;
  };
  return { remainingMs: Math.max(0, ...STEPS.filter((r) => byId.has(r.id)).map((r) => finish(r.id))), lowerBound };
}

export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}
