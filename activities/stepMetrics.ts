/**
 * Our own Prometheus series, recorded through the activity metric meter (Context.metricMeter), so
 * they leave the worker through the same exporter as the SDK's metrics (workers/telemetry.ts) and
 * carry its tags (namespace, task_queue, activity_type). An activity interceptor rather than code
 * in each step: every step activity gets the same series without knowing about them.
 *
 * Every series is labelled with `run_id` (the workflow id) and `step` (the step id). The names and
 * what they mean are listed in docs/operating.md (Metrics).
 */
import type { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure, type MetricMeter, type MetricTags } from '@temporalio/common';
import type { ActivityInboundCallsInterceptor, ActivityInterceptors } from '@temporalio/worker';
import { nonRetryableErrorTypes, type StepProgress } from '../pipeline/steps';

/** Step activities take one StepInput; the other activities (run lock, placement) have no step. */
function stepOf(args: unknown[]): string | undefined {
  const input = args[0] as { stepId?: unknown } | undefined;
  return typeof input?.stepId === 'string' ? input.stepId : undefined;
}

/** The outcome label of a finished attempt. */
function outcomeOf(result: unknown): string {
  return (result as { cached?: boolean } | undefined)?.cached ? 'cached' : 'completed';
}

/** Whether Temporal will retry an attempt that failed with `err` (its retry policy aside). */
export function failureLabels(err: unknown): { failure_type: string; retryable: string } {
  if (err instanceof CancelledFailure) return { failure_type: 'Cancelled', retryable: 'false' };
  if (err instanceof ApplicationFailure) {
    const type = err.type ?? 'Error';
    const retryable = !err.nonRetryable && !nonRetryableErrorTypes.includes(type);
    return { failure_type: type, retryable: String(retryable) };
  }
  return { failure_type: err instanceof Error ? err.name : 'Error', retryable: 'true' };
}

interface StepSeries {
  duration: ReturnType<MetricMeter['createHistogram']>;
  queueWait: ReturnType<MetricMeter['createHistogram']>;
  failures: ReturnType<MetricMeter['createCounter']>;
  running: ReturnType<MetricMeter['createGauge']>;
  tokensPerS: ReturnType<MetricMeter['createGauge']>;
  loss: ReturnType<MetricMeter['createGauge']>;
  progress: ReturnType<MetricMeter['createGauge']>;
  gpuMemory: ReturnType<MetricMeter['createGauge']>;
}

function series(meter: MetricMeter): StepSeries {
  return {
    duration: meter.createHistogram('wmss_step_duration_seconds', 'float', 's', 'wall time of a step attempt'),
    queueWait: meter.createHistogram(
      'wmss_step_queue_wait_seconds',
      'float',
      's',
      'schedule-to-start of a step attempt: how long it waited for a worker',
    ),
    failures: meter.createCounter(
      'wmss_step_attempt_failures',
      '1',
      'failed step attempts by failure type; retryable="true" ones are retried',
    ),
    running: meter.createGauge('wmss_step_running', 'int', '1', '1 while an attempt of the step runs here'),
    tokensPerS: meter.createGauge('wmss_kernel_tokens_per_second', 'float', 'tokens/s', "the kernel's throughput"),
    loss: meter.createGauge('wmss_training_loss', 'float', '1', 'latest training loss reported by the kernel'),
    progress: meter.createGauge('wmss_step_progress_ratio', 'float', '1', 'done / total of the running step'),
    gpuMemory: meter.createGauge(
      'wmss_gpu_memory_peak_gib',
      'float',
      'GiB',
      "peak GPU memory of the step's kernel (CUDA only)",
    ),
  };
}

/** Records one progress heartbeat (the StepProgress shape every step sends). */
export function recordProgress(s: StepSeries, tags: MetricTags, details: unknown): void {
  const p = details as Partial<StepProgress> | undefined;
  if (!p || typeof p !== 'object') return;
  if (typeof p.tokensPerS === 'number' && Number.isFinite(p.tokensPerS)) s.tokensPerS.set(p.tokensPerS, tags);
  if (typeof p.loss === 'number' && Number.isFinite(p.loss)) s.loss.set(p.loss, tags);
  if (typeof p.done === 'number' && typeof p.total === 'number' && p.total > 0)
    s.progress.set(Math.min(1, p.done / p.total), tags);
}

function gpuMemoryOf(result: unknown): number | undefined {
  const value = (result as { metrics?: Record<string, unknown> } | undefined)?.metrics?.peak_gpu_mem_gib;
  return typeof value === 'number' ? value : undefined;
}

class StepMetricsInbound implements ActivityInboundCallsInterceptor {
  constructor(private readonly ctx: Context) {}

  async execute(input: { args: unknown[] }, next: (input: never) => Promise<unknown>): Promise<unknown> {
    const step = stepOf(input.args);
    if (step === undefined) return next(input as never);
    const info = this.ctx.info;
    const tags: MetricTags = { run_id: info.workflowExecution?.workflowId ?? 'unknown', step };
    const s = series(this.ctx.metricMeter);
    const startedAt = Date.now();
    s.queueWait.record(Math.max(0, startedAt - info.currentAttemptScheduledTimestampMs) / 1000, tags);
    s.running.set(1, tags);
    // Heartbeats carry the kernel's progress: observe them on their way to the server.
    const ctx = this.ctx as unknown as { heartbeatFn: (details?: unknown) => void };
    const send = ctx.heartbeatFn;
    ctx.heartbeatFn = (details?: unknown) => {
      recordProgress(s, tags, details);
      send(details);
    };
    const seconds = () => (Date.now() - startedAt) / 1000;
    try {
      const result = await next(input as never);
      s.duration.record(seconds(), { ...tags, outcome: outcomeOf(result) });
      const gib = gpuMemoryOf(result);
      if (gib !== undefined) s.gpuMemory.set(gib, tags);
      return result;
    } catch (err) {
      const labels = failureLabels(err);
      s.duration.record(seconds(), { ...tags, outcome: labels.failure_type === 'Cancelled' ? 'cancelled' : 'failed' });
      s.failures.add(1, { ...tags, ...labels });
      throw err;
    } finally {
      s.running.set(0, tags);
    }
  }
}

/** The worker option `interceptors.activity` entry that records the series above. */
export function stepMetricsInterceptor(ctx: Context): ActivityInterceptors {
  return { inbound: new StepMetricsInbound(ctx) };
}
