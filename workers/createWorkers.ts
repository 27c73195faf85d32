/**
 * Builds the two kinds of worker. Entry points (workers/control.ts, workers/gpu.ts), the demo and
 * the integration tests all go through here, so they run the same code.
 *
 * - control: workflow tasks and the CPU steps (3, 4, 5a, 6) on the control queue (`wmss`), and
 *   the CPU steps pinned to this host (`wmss@<host>`, local storage).
 * - gpu: the kernel steps (0, 1, 2, 5b, 7) on the shared GPU queue, this host's queue and, with
 *   a pool, the pool's queues (pipeline/placement.ts); one kernel at a time across all of them,
 *   on the devices it owns.
 */
import os from 'node:os';
import type { WorkerDeploymentVersion } from '@temporalio/common';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { PlacementActivities } from '../activities/contract';
import { cpuSteps } from '../activities/cpuSteps';
import { kernelSteps } from '../activities/kernelSteps';
import { pythonExecutable } from '../activities/kernelBridge';
import { acquireKernelForkServer } from '../activities/kernelForkServer';
import { withResolvedPaths } from '../activities/runPaths';
import { withHost } from '../activities/hostContext';
import { groupRendezvous } from '../activities/groupRendezvous';
import { runLockActivities } from '../activities/runLock';
import { runControlActivities } from '../activities/invalidateSteps';
import { alertActivities } from '../activities/alertActivities';
import { stepMetricsInterceptor } from '../activities/stepMetrics';
import { sweepActivities } from '../activities/sweepActivities';
import { runSetupActivities } from '../activities/runSetup';
import { controlWorkerQueues, gpuWorkerQueues } from '../pipeline/placement';
import { describeDeviceSet, type DeviceSet } from '../activities/deviceSet';
import { shutdownGraceMs } from '../activities/workerShutdown';

export interface WorkerSetOptions {
  connection: NativeConnection;
  namespace?: string;
  controlQueue?: string;
  gpuQueue?: string;
  /** Host name used for this host's queue; WMSS_HOST overrides os.hostname() (tests fake hosts). */
  host?: string;
  /** Worker Deployment Version to join (`--deployment`, `--build-id`); unset: an unversioned worker. */
  version?: WorkerDeploymentVersion;
}

/**
 * Slots of a host-pinned queue. Only this host can run its tasks, so the worker takes them all at
 * once and lets them wait for the devices (or disk) inside; a task then starts at once whenever a
 * worker of the host is alive, and placement.hostTimeout (schedule-to-start) expires only when
 * none is: that is what HostUnavailable means.
 */
const PINNED_SLOTS = 32;

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

/**
 * How long a worker may take to stop after SIGTERM/SIGINT (Worker.shutdown). Running activities
 * are cancelled at once (shutdownGraceTime 0, the SDK default): a kernel gets SIGTERM and the
 * shutdown grace (activities/workerShutdown.ts, default 120 s) to save its checkpoint, then its
 * attempt fails as the retryable WorkerShutdown; a digest or reader stops at its next chunk.
 * After this time (default: the grace + 30 s) the SDK gives up waiting and run() rejects, so a
 * worker process always exits: an activity that ignores cancellation can no longer keep it alive
 * until SIGKILL. WMSS_WORKER_SHUTDOWN_SECONDS overrides it (tests).
 */
export function shutdownForceTimeMs(env: NodeJS.ProcessEnv = process.env): number {
  const s = Number(env.WMSS_WORKER_SHUTDOWN_SECONDS);
  return env.WMSS_WORKER_SHUTDOWN_SECONDS && Number.isFinite(s) && s > 0 ? s * 1000 : shutdownGraceMs(env) + 30_000;
}
/** Cancellation reaches an activity only with a heartbeat reply, so heartbeats go out at least this often. */
const HEARTBEAT_THROTTLE = '5s' as const;

/**
 * Options every worker of ours shares: the step metrics (activities/stepMetrics.ts) and, with a
 * deployment version, Worker Versioning: the worker joins that Worker Deployment Version, and its
 * workflows (pipeline runs, alert deliveries) are PINNED: a run stays on the version it started on
 * until it ends, whatever version is made current meanwhile (docs/operating.md). The behaviour is
 * the worker's default, not declared on the workflow: the server refuses a declared one from an
 * unversioned worker, and unversioned workers stay the default.
 */
export function sharedWorkerOptions(
  version?: WorkerDeploymentVersion,
): Pick<WorkerOptions, 'interceptors' | 'workerDeploymentOptions'> {
  return {
    interceptors: { activity: [stepMetricsInterceptor] },
    ...(version && {
      workerDeploymentOptions: { version, useWorkerVersioning: true, defaultVersioningBehavior: 'PINNED' },
    }),
  };
}

/**
 * The control worker: workflow tasks and CPU steps on the shared control queue, plus a second
 * worker (no workflows) for the CPU steps pinned to this host. Returns both; `extra` applies to both
 * (a test may pass one prebuilt workflowBundle instead of bundling per worker).
 */
export async function createControlWorkers(
  opts: WorkerSetOptions,
  extra: Partial<WorkerOptions> = {},
): Promise<Worker[]> {
  const host = workerHost(opts.host);
  // the CPU steps, the run dir lock that brackets every run (activities/runLock.ts) `wmss rerun`'s invalidation, alert delivery and the sweeps' seeding and aggregation
  const activities = withHost(host, {
    ...withResolvedPaths(cpuSteps()),
    ...runLockActivities(),
    ...runControlActivities(),
    ...alertActivities(),
    ...sweepActivities(),
  });
  const queues = controlWorkerQueues({ controlQueue: opts.controlQueue ?? 'wmss', host });
  const common = {
    connection: opts.connection,
    namespace: opts.namespace ?? 'default',
    activities,
    maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    shutdownForceTime: shutdownForceTimeMs(),
    identity: `control@${host}/${process.pid}`,
    ...sharedWorkerOptions(opts.version),
  };
  const { workflowBundle, ...rest } = extra;
  return Promise.all([
    Worker.create({
      ...common,
      taskQueue: queues.shared,
      ...(workflowBundle ? { workflowBundle } : { workflowsPath }),
      // File transforms are disk-bound; two at once keeps one disk busy without thrashing.
      maxConcurrentActivityTaskExecutions: 2,
      ...rest,
    }),
    Worker.create({ ...common, taskQueue: queues.pinned, maxConcurrentActivityTaskExecutions: PINNED_SLOTS, ...rest }),
  ]);
}

/** The control worker of the shared queue alone (workflows + CPU steps), as before host queues. */
export async function createControlWorker(opts: WorkerSetOptions, extra: Partial<WorkerOptions> = {}): Promise<Worker> {
  const host = workerHost(opts.host);
  const { workflowBundle, ...rest } = extra;
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace ?? 'default',
    taskQueue: opts.controlQueue ?? 'wmss',
    ...(workflowBundle ? { workflowBundle } : { workflowsPath }),
    activities: withHost(host, {
      ...withResolvedPaths(cpuSteps()),
      ...runLockActivities(),
      ...runControlActivities(),
      ...alertActivities(),
      ...sweepActivities(),
    }),
    // File transforms are disk-bound; two at once keeps one disk busy without thrashing.
    maxConcurrentActivityTaskExecutions: 2,
    maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
    shutdownForceTime: shutdownForceTimeMs(),
    ...sharedWorkerOptions(opts.version),
    ...rest,
  });
}

export async function createGpuWorkers(
  opts: WorkerSetOptions & { devices: DeviceSet; threads?: number; pool?: string },
  extra: Partial<WorkerOptions> = {},
): Promise<Worker[]> {
  const host = workerHost(opts.host);
  const exclusive = createExclusive();
  const steps = withResolvedPaths(kernelSteps({ devices: opts.devices, exclusive, threads: opts.threads }));
  // workerHost: the workflow asks a free GPU worker where it is, to place a local-storage run
  // groupRendezvous: member 0 of a multi-node training group offers its address and a free port
  const placement: PlacementActivities = { workerHost: async () => host, groupRendezvous };
  const activities = withHost(host, { ...steps, ...placement, ...runSetupActivities() });
  const { shared, pinned } = gpuWorkerQueues({ gpuQueue: opts.gpuQueue ?? 'wmss-gpu', host, pool: opts.pool });
  const make = (taskQueue: string, slots: number) =>
    Worker.create({
      connection: opts.connection,
      namespace: opts.namespace ?? 'default',
      taskQueue,
      activities,
      // Shared queues: one task at a time, so a busy worker leaves shared work to idle ones.
      maxConcurrentActivityTaskExecutions: slots,
      maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE,
      shutdownForceTime: shutdownForceTimeMs(),
      identity: `gpu[${describeDeviceSet(opts.devices)}]@${host}/${process.pid}`,
      ...sharedWorkerOptions(opts.version),
      ...extra,
    });
  // the kernel fork server (activities/kernelForkServer.ts) lives as long as these workers run
  const release = acquireKernelForkServer(pythonExecutable());
  const workers = await Promise.all([
    ...shared.map((q) => make(q, 1)),
    ...pinned.map((q) => make(q, PINNED_SLOTS)),
  ]).catch((err: unknown) => {
    release();
    throw err;
  });
  return releaseWhenStopped(workers, release);
}

/**
 * Calls `release` once every worker's run() has ended. Worker has no stop event, so run() (which
 * runUntil calls too) is wrapped on these instances.
 */
function releaseWhenStopped(workers: Worker[], release: () => void): Worker[] {
  let running = workers.length;
  for (const worker of workers) {
    const run = worker.run.bind(worker);
    worker.run = () => run().finally(() => --running === 0 && release());
  }
  return workers;
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
