/**
 * Start-up of a control or GPU worker (`wmss worker control|gpu`, workers/workerCommand.ts): claim
 * the devices, connect, build, print what is served, run.
 */
import type { WorkerDeploymentVersion } from '@temporalio/common';
import { connectWorker, temporalTarget, type ConnectionFlags } from '../temporal/connection';
import { createControlWorkers, createGpuWorkers, runWorkers, workerHost } from './createWorkers';
import { claimDevices } from './deviceLocks';
import { describeDeviceSet, parseDeviceSet } from '../activities/deviceSet';
import { checkDevicesPresent } from './hostChecks';

/** Options of `wmss worker control|gpu`; connection flags (address, namespace, API key, TLS paths, profile): temporal/connection.ts. */
export interface WorkerCliOptions extends ConnectionFlags {
  gpus?: string;
  /** CPU threads per kernel. */
  threads?: string;
  controlQueue?: string;
  gpuQueue?: string;
  /** GPU kind this worker also serves (`wmss-gpu:<pool>`), e.g. h100. */
  pool?: string;
  /** Host name for the host queues and StepResult.host; default WMSS_HOST, else the machine's name. */
  host?: string;
  /** Worker Deployment Version to join (workers/workerCommand.ts deploymentVersion); unset: unversioned. */
  version?: WorkerDeploymentVersion;
}

export async function startWorker(kind: 'control' | 'gpu', opts: WorkerCliOptions): Promise<void> {
  // flags over TEMPORAL_* over the profile file (temporal/connection.ts); checked before anything is claimed
  const target = temporalTarget(opts);
  const { address, namespace } = target;
  const host = workerHost(opts.host);
  const devices = parseDeviceSet(opts.gpus ?? 'cpu');
  if (kind === 'gpu') checkDevicesPresent(devices);
  // Claimed before connecting: a worker that cannot own its devices must not take any task.
  const claim =
    kind === 'gpu'
      ? claimDevices(devices, { worker: `wmss gpu worker --gpus ${opts.gpus ?? 'cpu'}`, host })
      : undefined;
  const release = () => claim?.release();
  process.once('exit', release);
  const connection = await connectWorker(target);
  try {
    const common = {
      connection,
      namespace,
      controlQueue: opts.controlQueue,
      gpuQueue: opts.gpuQueue,
      host,
      version: opts.version,
    };
    const workers =
      kind === 'control'
        ? await createControlWorkers(common)
        : await createGpuWorkers({
            ...common,
            devices,
            pool: opts.pool,
            threads: opts.threads ? Number(opts.threads) : undefined,
          });
    const queues = workers.map((w) => w.options.taskQueue).join(', ');
    const n = devices.kind === 'cuda' ? devices.ids.length : 1;
    const what =
      kind === 'gpu'
        ? ` on ${describeDeviceSet(devices)}${n > 1 ? ` (training: torchrun with ${n} ranks; entropy and evaluate: ${n} shards)` : ''}`
        : '';
    const locks = claim && claim.files.length ? `; device locks in ${claim.dir}` : '';
    const v = opts.version ? `, version ${opts.version.deploymentName}/${opts.version.buildId}` : '';
    console.log(
      `wmss ${kind} worker${what} @ ${host} serving ${queues} at ${address} (namespace ${namespace}, ${target.security}${v})${locks}`,
    );
    await runWorkers(workers);
  } finally {
    release();
    await connection.close();
  }
}
