/**
 * `wmss watch <run>`: one progress bar per running step (samples or optimizer steps, loss,
 * tokens/s, ETA) plus a pipeline bar with the run's ETA, refreshed from the workflow's `progress`
 * query and the activities' heartbeat details until the run ends. Bars are drawn by cli-progress
 * on a terminal; elsewhere (CI logs, pipes, `--plain`) it prints plain lines when something changes.
 * Needs only the workflow id, so it follows runs started by `wmss start`, `temporal workflow start`
 * or a Schedule alike.
 */
import { MultiBar, Presets, type SingleBar } from 'cli-progress';
import type { Client } from '@temporalio/client';
import { STEPS } from '../../pipeline/steps';
import type { StepStatus } from '../../pipeline/workflowApi';
import { formatDuration, type ProgressSamples } from './eta';
import {
  describeProgress,
  estimates,
  formatPipelineEta,
  liveness,
  renderSnapshot,
  snapshotRun,
  type RunSnapshot,
} from './status';

export interface WatchOptions {
  everyMs: number;
  /** Plain lines instead of bars (default: when the output is not a terminal). */
  plain?: boolean;
  out?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Stop after this many refreshes (tests); default until the run ends. */
  maxRefreshes?: number;
}

const STEP_FORMAT = ' {num} {title} |{bar}| {value}/{total} {unit} {percentage}% · {details}';
const PIPELINE_FORMAT = ' run {run}  |{bar}| {value}/{total} steps done · {state} · ETA {eta}';

/** Remembers the last few (done, time) pairs per step for rate estimates. */
function recordSamples(samples: Record<string, ProgressSamples>, snap: RunSnapshot): void {
  for (const beat of snap.heartbeats) {
    const p = beat.details;
    if (!p || !p.total) continue;
    const list = (samples[beat.stepId] ??= []);
    const at = Date.parse(p.updatedAt);
    const last = list[list.length - 1];
    if (last && last.done > p.done) list.length = 0; // a retry restarted from a checkpoint
    if (!last || last.at !== at) list.push({ done: p.done, at });
    if (list.length > 30) list.shift();
  }
}

const doneCount = (steps: StepStatus[]) => steps.filter((s) => s.state === 'completed' || s.state === 'cached').length;

function stepDetails(snap: RunSnapshot, step: StepStatus, leftMs: number | undefined): string {
  const beat = snap.heartbeats.find((h) => h.stepId === step.id);
  const p = beat?.details;
  const parts: string[] = [];
  if (p?.loss !== undefined) parts.push(`loss ${p.loss.toFixed(4)}`);
  if (p?.tokensPerS !== undefined) parts.push(`${Math.round(p.tokensPerS)} tok/s`);
  if (p?.detail) parts.push(p.detail);
  parts.push(`ETA ${formatDuration(leftMs)}`);
  if (p?.lastCheckpoint) parts.push(`ckpt ${p.lastCheckpoint.step}`);
  if (beat && beat.attempt > 1) parts.push(`attempt ${beat.attempt}`);
  return parts.join(' · ');
}

/** Follows a run until it ends; returns the last snapshot (its workflowStatus says how it ended). */
export async function watchRun(client: Client, workflowId: string, opts: WatchOptions): Promise<RunSnapshot> {
  const out = opts.out ?? process.stdout;
  const plain = opts.plain ?? !(out as NodeJS.WriteStream).isTTY;
  const samples: Record<string, ProgressSamples> = {};
  const seenState = new Map<string, string>();
  const lastLine = new Map<string, string>();
  const lastWaiting = new Map<string, { kind: string; at: number }>();
  const write = (s: string) => out.write(`${s}\n`);
  let multi: MultiBar | undefined;
  let pipelineBar: SingleBar | undefined;
  const bars = new Map<string, SingleBar>();
  const titleWidth = Math.max(...STEPS.map((s) => s.title.length));

  let snap: RunSnapshot | undefined;
  try {
    for (let n = 1; ; n++) {
      snap = await snapshotRun(client, workflowId);
      recordSamples(samples, snap);
      const est = estimates(snap, samples);
      const clock = new Date(snap.at).toISOString().slice(11, 19);
      const log = (line: string) => (multi ? multi.log(`${line}\n`) : write(line));
      if (!plain && !multi) {
        multi = new MultiBar(
          {
            stream: out,
            clearOnComplete: false,
            hideCursor: true,
            autopadding: true,
            barsize: 24,
            format: STEP_FORMAT,
            fps: 5,
          },
          Presets.shades_classic,
        );
        pipelineBar = multi.create(
          snap.progress.steps.length,
          0,
          { run: snap.progress.runName || '?', state: snap.progress.status, eta: '?' },
          { format: PIPELINE_FORMAT },
        );
      }
      if (n === 1)
        log(`watching ${workflowId} (run ${snap.progress.runName || '?'}, dir ${snap.progress.runDir || '?'})`);

      for (const step of snap.progress.steps) {
        const before = seenState.get(step.id);
        if (before !== step.state) {
          seenState.set(step.id, step.state);
          if (step.state !== 'pending' && !(n === 1 && step.state !== 'running')) {
            const took =
              step.startedAt && step.finishedAt
                ? ` in ${formatDuration(Date.parse(step.finishedAt) - Date.parse(step.startedAt))}`
                : '';
            const why = step.error ? `: ${step.error.type ?? 'error'}: ${step.error.message.split('\n')[0]}` : '';
            log(
              `[${clock}] step ${step.number} ${step.title}: ${step.state}${step.state === 'running' ? '' : took}${why}`,
            );
          }
        }
        const waiting =
          step.state === 'running'
            ? liveness(
                snap.heartbeats.find((h) => h.stepId === step.id),
                snap.at,
              )
            : '';
        if (waiting) {
          // Say it when it starts or changes, then every 15 s: the seconds in it tick each refresh.
          const kind = waiting.split(' ').slice(0, 2).join(' ');
          const prev = lastWaiting.get(step.id);
          if (!prev || prev.kind !== kind || snap.at - prev.at >= 15_000) {
            log(`[${clock}] step ${step.number} ${step.title}: ${waiting}`);
            lastWaiting.set(step.id, { kind, at: snap.at });
          }
        } else lastWaiting.delete(step.id);
        const beat = snap.heartbeats.find((h) => h.stepId === step.id)?.details;
        if (step.state === 'running' && beat && beat.total > 0) {
          const details = stepDetails(snap, step, est.steps[step.id]);
          if (multi) {
            const payload = {
              num: step.number.padEnd(2),
              title: step.title.padEnd(titleWidth),
              unit: beat.unit,
              details,
            };
            const bar = bars.get(step.id) ?? multi.create(beat.total, beat.done, payload);
            bars.set(step.id, bar);
            bar.setTotal(beat.total);
            bar.update(beat.done, payload);
          } else {
            // A line when the progress moves (not for each tick of the ETA).
            const key = describeProgress(beat);
            if (lastLine.get(step.id) !== key)
              write(`[${clock}] step ${step.number} ${key} · ETA ${formatDuration(est.steps[step.id])}`);
            lastLine.set(step.id, key);
          }
        } else if (bars.has(step.id)) {
          multi?.remove(bars.get(step.id)!);
          bars.delete(step.id);
        }
      }
      const eta = formatPipelineEta(est.pipeline) || '-';
      if (pipelineBar)
        pipelineBar.update(doneCount(snap.progress.steps), {
          run: snap.progress.runName || '?',
          state: snap.progress.status,
          eta,
        });
      else {
        const key = `${doneCount(snap.progress.steps)}/${snap.progress.steps.length}`;
        if (lastLine.get('') !== key)
          write(`[${clock}] run ${snap.progress.runName || '?'}: ${key} steps done, ETA ${eta}`);
        lastLine.set('', key);
      }

      if (snap.workflowStatus !== 'RUNNING' || (opts.maxRefreshes && n >= opts.maxRefreshes)) break;
      await new Promise((r) => setTimeout(r, opts.everyMs));
    }
  } finally {
    multi?.stop();
  }
  write(`\n${renderSnapshot(snap, samples)}`);
  return snap;
}
