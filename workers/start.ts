/** Shared start-up of the worker entry points: connect, build, print what is served, run. */
import { NativeConnection } from '@temporalio/worker';
import { createControlWorker, createGpuWorkers, runWorkers, workerHost } from './createWorkers';
import { describeDeviceSet, parseDeviceSet } from './deviceSet';

export interface WorkerCliOptions {
  gpus?: string;
  /** CPU threads per kernel. */
  threads?: string;
  address?: string;
  namespace?: string;
  controlQueue?: string;
  gpuQueue?: string;
}

export async function startWorker(kind: 'control' | 'gpu', opts: WorkerCliOptions): Promise<void> {
  const address = opts.address ?? process.env.TEMPORAL_ADDRESS ?? 'localhost:7233';
  const namespace = opts.namespace ?? process.env.TEMPORAL_NAMESPACE ?? 'default';
  const connection = await NativeConnection.connect({ address });
  try {
    const common = { connection, namespace, controlQueue: opts.controlQueue, gpuQueue: opts.gpuQueue };
    const workers =
      kind === 'control'
        ? [await createControlWorker(common)]
        : await createGpuWorkers({ ...common, devices: parseDeviceSet(opts.gpus ?? 'cpu'), threads: opts.threads ? Number(opts.threads) : undefined });
    const queues = workers.map((w) => w.options.taskQueue).join(', ');
    const devices = kind === 'gpu' ? ` on ${describeDeviceSet(parseDeviceSet(opts.gpus ?? 'cpu'))}` : '';
    console.log(`wmss ${kind} worker${devices} @ ${workerHost()} serving ${queues} at ${address} (namespace ${namespace})`);
    await runWorkers(workers);
  } finally {
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
