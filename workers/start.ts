/** Shared start-up of the worker entry points: connect, build, print what is served, run. */
import { NativeConnection } from '@temporalio/worker';
import { createControlWorkers, createGpuWorkers, runWorkers, workerHost } from './createWorkers';
import { claimDevices } from './deviceLocks';
import { describeDeviceSet, parseDeviceSet } from './deviceSet';

export interface WorkerCliOptions {
  gpus?: string;
  /** CPU threads per kernel. */
  threads?: string;
  address?: string;
  namespace?: string;
  controlQueue?: string;
  gpuQueue?: string;
  /** GPU kind this worker also serves (`wmss-gpu:<pool>`), e.g. h100. */
  pool?: string;
  /** Host name for the host queues and StepResult.host; default WMSS_HOST, else the machine's name. */
  host?: string;
}

export async function startWorker(kind: 'control' | 'gpu', opts: WorkerCliOptions): Promise<void> {
  const address = opts.address ?? process.env.TEMPORAL_ADDRESS ?? 'localhost:7233';
  const namespace = opts.namespace ?? process.env.TEMPORAL_NAMESPACE ?? 'default';
  const host = workerHost(opts.host);
  const devices = parseDeviceSet(opts.gpus ?? 'cpu');
  // Claimed before connecting: a worker that cannot own its devices must not take any task.
  const claim = kind === 'gpu' ? claimDevices(devices, { worker: `wmss gpu worker --gpus ${opts.gpus ?? 'cpu'}`, host }) : undefined;
  const release = () => claim?.release();
  process.once('exit', release);
  const connection = await NativeConnection.connect({ address });
  try {
    const common = { connection, namespace, controlQueue: opts.controlQueue, gpuQueue: opts.gpuQueue, host };
    const workers =
      kind === 'control'
        ? await createControlWorkers(common)
        : await createGpuWorkers({ ...common, devices, pool: opts.pool, threads: opts.threads ? Number(opts.threads) : undefined });
    const queues = workers.map((w) => w.options.taskQueue).join(', ');
    const n = devices.kind === 'cuda' ? devices.ids.length : 1;
    const what = kind === 'gpu' ? ` on ${describeDeviceSet(devices)}${n > 1 ? ` (training: torchrun with ${n} ranks; entropy and evaluate: ${n} shards)` : ''}` : '';
    const locks = claim && claim.files.length ? `; device locks in ${claim.dir}` : '';
    console.log(`wmss ${kind} worker${what} @ ${host} serving ${queues} at ${address} (namespace ${namespace})${locks}`);
    await runWorkers(workers);
  } finally {
    release();
    await connection.close();
  }
}

export function startWorkerFromArgs(kind: 'control' | 'gpu', argv: string[]): Promise<void> {
  const opts: WorkerCliOptions = {};
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-(\w)/g, (_, c: string) => c.toUpperCase()) as keyof WorkerCliOptions;
    opts[key] = argv[i + 1];
  }
  return startWorker(kind, opts).catch((err) => {
    console.error(`wmss ${kind} worker: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
