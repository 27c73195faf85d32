/**
 * The Prometheus endpoint of a worker process (`wmss worker … --metrics-port N`): Runtime.install
 * telemetry, set once per process before any worker is built. It serves the SDK's own metrics
 * (temporal_*: task slots, poll latency, activity execution latency, …) and ours, which the step
 * activities record through the activity metric meter (activities/stepMetrics.ts), at
 * http://<bind>:<port>/metrics.
 */
import type { TelemetryOptions } from '@temporalio/worker';

export interface MetricsEndpoint {
  port: number;
  /** Address to bind; 0.0.0.0 (all interfaces) unless given, so Prometheus in another container reaches it. */
  host?: string;
}

/** A port from the command line: an integer 1–65535, else an error naming the flag. */
export function parseMetricsPort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535)
    throw new Error(`--metrics-port must be a port number 1-65535, not "${text}"`);
  return port;
}

/**
 * Buckets of our histograms, in seconds: a step lasts from a second (a cache hit) to days (joint
 * training), and waits for a worker from no time to hours; the exporter's defaults stop at 10 000.
 */
export const HISTOGRAM_BUCKETS: Record<string, number[]> = {
  wmss_step_duration_seconds: [
    1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 57600, 86400, 172800, 345600, 604800,
  ],
  wmss_step_queue_wait_seconds: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400],
};

/** Telemetry options that export metrics in Prometheus' text format; undefined: no metrics. */
export function metricsTelemetry(endpoint: MetricsEndpoint | undefined): TelemetryOptions | undefined {
  if (!endpoint) return undefined;
  return {
    metrics: {
      // durations in seconds, units in names (wmss_step_duration_seconds), counters as *_total:
      // the conventions Prometheus and Grafana's defaults expect
      prometheus: {
        bindAddress: `${endpoint.host ?? '0.0.0.0'}:${endpoint.port}`,
        useSecondsForDurations: true,
        countersTotalSuffix: true,
        histogramBucketOverrides: HISTOGRAM_BUCKETS,
      },
    },
  };
}
