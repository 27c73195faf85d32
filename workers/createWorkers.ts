/**
 * Builds the two kinds of worker. Entry points (workers/control.ts, workers/gpu.ts), the demo and
 * the integration tests all go through here, so they run the same code.
 *
 * - control: workflow tasks and the CPU steps (3, 4, 5a, 6) on the control queue (`wmss`).
 * - gpu: the kernel steps (0, 1, 2, 5b, 7) on the shared GPU queue and this host's queue,
 *   one kernel at a time across both, on the devices it owns.
 */
import os from 'node:os';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { cpuSteps } from '../activities/cpuSteps';
import { kernelSteps } from '../activities/kernelSteps';
import { withResolvedPaths } from '../activities/runPaths';
import { describeDeviceSet, type DeviceSet } from './deviceSet';

export interface WorkerSetOptions {
  connection: NativeConnection;
  namespace?: string;
  controlQueue?: string;
  gpuQueue?: string;
  /** Host name used for this host's queue; WMSS_HOST overrides os.hostname() (tests fake hosts). */
  host?: string;
}

export function workerHost(explicit?: string): string {
  return explicit ?? process.env.WMSS_HOST ?? os.hostname();
}

/** A promise chain that lets one task run at a time. */
export function createExclusive(): <T>(fn: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>) => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  };
}

const workflowsPath = require.resolve('../workflows');
/** Cancellation reaches an activity only with a heartbeat reply, so heartbeats go out at least this often. */
const HEARTBEAT_THROTTLE = '5s';

export async function createControlWorker(opts: WorkerSetOptions, extra: Partial<WorkerOptions> = {}): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace ?? 'default',
    taskQueue: opts.controlQueue ?? 'wmss',
    workflowsPath,
    activities: withResolvedPaths(cpuSteps()),
    // File transforms are disk-bound; two at once keeps one disk busy without thrashing.
    maxConcurrentActivityTaskExecutions: 2,
    maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    ...extra,
  });
}

export async function createGpuWorkers(opts: WorkerSetOptions & { devices: DeviceSet; threads?: number }, extra: Partial<WorkerOptions> = {}): Promise<Worker[]> {
  const exclusive = createExclusive();
  const activities = withResolvedPaths(kernelSteps({ devices: opts.devices, exclusive, threads: opts.threads }));
  const base = opts.gpuQueue ?? 'wmss-gpu';
  const queues = [base, `${base}@${workerHost(opts.host)}`];
  return Promise.all(
    queues.map((taskQueue) =>
      Worker.create({
        connection: opts.connection,
        namespace: opts.namespace ?? 'default',
        taskQueue,
        activities,
        maxConcurrentActivityTaskExecutions: 1,
        maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
        identity: `gpu[${describeDeviceSet(opts.devices)}]@${workerHost(opts.host)}/${process.pid}`,
        ...extra,
      }),
    ),
  );
}

/** Runs workers until one stops; SIGINT/SIGTERM shut all of them down gracefully. */
export async function runWorkers(workers: Worker[]): Promise<void> {
  const stop = () => workers.forEach((w) => w.getState() === 'RUNNING' && w.shutdown());
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await Promise.all(workers.map((w) => w.run()));
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
