/**
 * Start-up checks of `wmss worker`: the GPUs a worker claims must exist on its host, and the SDK's
 * own logging (webpack's module listing while bundling the workflows, "No workflows registered"
 * for activity-only workers) stays out of the way unless asked for with --verbose.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { DefaultLogger, Runtime, type LogEntry, type LogLevel } from '@temporalio/worker';
import type { DeviceSet } from '../activities/deviceSet';
import { metricsTelemetry, type MetricsEndpoint } from './telemetry';

/**
 * How many NVIDIA GPUs this host shows, or undefined when it has no NVIDIA driver. Asks
 * nvidia-smi (what a user would run) and falls back to the driver's /proc entries (containers
 * with the device but without the tool).
 */
export function countHostGpus(): number | undefined {
  try {
    const out = execFileSync('nvidia-smi', ['-L'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 15_000,
    });
    return out.split('\n').filter((l) => /^GPU \d+/.test(l)).length;
  } catch {
    // no tool, or no driver behind it
  }
  const proc = '/proc/driver/nvidia/gpus';
  return existsSync(proc) ? readdirSync(proc).length : undefined;
}

/**
 * Refuses a device set this host cannot serve. Without it a worker started with `--gpus 0` on a
 * machine without CUDA announces "on cuda:0", takes GPU steps and fails each one in its kernel.
 * `count` is the host's GPU count (tests pass it; default: countHostGpus()).
 */
export function checkDevicesPresent(
  devices: DeviceSet,
  count: number | undefined = devices.kind === 'cuda' ? countHostGpus() : undefined,
): void {
  if (devices.kind === 'cpu') return;
  const spec = devices.ids.join(',');
  if (count === undefined || count === 0)
    throw new Error(
      `--gpus ${spec}: this host has no NVIDIA GPU (nvidia-smi -L lists none and there is no /proc/driver/nvidia); start the worker with --gpus cpu to run kernels on the CPU`,
    );
  // kernels get CUDA_VISIBLE_DEVICES=<ids> (activities/deviceSet.ts kernelEnv): ids are the host's numbering
  const missing = devices.ids.filter((id) => id >= count);
  if (missing.length)
    throw new Error(
      `--gpus ${spec}: device${missing.length > 1 ? 's' : ''} ${missing.join(',')} not on this host, which has ${count} GPU${count === 1 ? '' : 's'} (0${count > 1 ? `–${count - 1}` : ''})`,
    );
}

let installed = false;

/**
 * Warnings that describe the design, not a problem: the host-pinned workers serve activities only
 * (workers/createWorkers.ts), so the SDK's "No workflows registered" is expected for each of them.
 */
const EXPECTED_WARNINGS = [/^No workflows registered/];

/** Like the SDK's default log function (stderr), with the expected warnings dropped unless verbose. */
export function workerLogFunction(
  verbose: boolean,
  write: (line: string, meta?: unknown) => void = (l, m) => (m === undefined ? console.error(l) : console.error(l, m)),
) {
  return (entry: LogEntry): void => {
    if (!verbose && EXPECTED_WARNINGS.some((re) => re.test(entry.message))) return;
    const time = new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString();
    const meta = entry.meta && Object.keys(entry.meta).length ? entry.meta : undefined;
    write(`${time} [${entry.level}] ${entry.message}`, meta);
  };
}

/**
 * The SDK's logger at WARN (INFO with --verbose: workflow bundling, pollers); once per process,
 * before any worker is built. The SDK's default is INFO, which prints webpack's bundling report.
 */
export function installWorkerLogging(verbose = false, metrics?: MetricsEndpoint): void {
  if (installed) return;
  const level: LogLevel = verbose ? 'INFO' : 'WARN';
  // metrics: the Prometheus endpoint of --metrics-port (workers/telemetry.ts)
  try {
    Runtime.install({
      logger: new DefaultLogger(level, workerLogFunction(verbose)),
      telemetryOptions: metricsTelemetry(metrics),
    });
  } catch (err) {
    // e.g. the port is taken: name the flag, the worker does not start
    if (metrics) throw new Error(`--metrics-port ${metrics.port}: ${(err as Error).message}`);
    throw err;
  }
  installed = true;
}
