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
      },
    },
  };
}
