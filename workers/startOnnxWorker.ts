/**
 * The onnx worker: steps 0, 2 and 7 of runs whose `entropy.backend` / `eval.backend` is onnx,
 * on the onnx queue (`wmss-onnx`), with onnxruntime-node inside this process. It needs no
 * Python, torch or GPU, only the run dir (shared storage) with the exports of the onnx* steps.
 * One step at a time; onnxruntime gets `threads` intra-op threads (default: all cores).
 * Started by `wmss worker onnx` or `node dist/workers/onnxWorker.js` (workers/workerCommand.ts).
 */
import type { WorkerDeploymentVersion } from '@temporalio/common';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { withResolvedPaths } from '../activities/runPaths';
import { defaultOnnxThreads, onnxSteps } from '../activities/onnx/onnxSteps';
import { releaseOnnxSessions } from '../activities/onnx/model';
import { runWorkers, sharedWorkerOptions, shutdownForceTimeMs, workerHost } from './createWorkers';
import { connectWorker, temporalTarget } from '../temporal/connection';

export interface OnnxWorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  onnxQueue?: string;
  threads?: number;
  host?: string;
  version?: WorkerDeploymentVersion;
}

export async function createOnnxWorker(opts: OnnxWorkerOptions, extra: Partial<WorkerOptions> = {}): Promise<Worker> {
  const threads = opts.threads ?? defaultOnnxThreads();
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace ?? 'default',
    taskQueue: opts.onnxQueue ?? 'wmss-onnx',
    activities: withResolvedPaths(onnxSteps({ threads })),
    maxConcurrentActivityTaskExecutions: 1,
    maxHeartbeatThrottleInterval: '5s',
    shutdownForceTime: shutdownForceTimeMs(),
    identity: `onnx[${threads} threads]@${workerHost(opts.host)}/${process.pid}`,
    ...sharedWorkerOptions(opts.version),
    ...extra,
  });
}

/** Options of `wmss worker onnx`, as commander parsed them (connection flags: temporal/connection.ts). */
export interface OnnxWorkerCliOptions {
  onnxQueue?: string;
  threads?: string;
  version?: WorkerDeploymentVersion;
}

export async function startOnnxWorker(opts: OnnxWorkerCliOptions): Promise<void> {
  // flags over TEMPORAL_* over the profile file (temporal/connection.ts)
  const target = temporalTarget();
  const { address, namespace } = target;
  const threads = opts.threads ? Number(opts.threads) : undefined;
  if (threads !== undefined && !(Number.isInteger(threads) && threads > 0))
    throw new Error(`--threads must be a positive integer (got "${opts.threads}")`);
  const connection = await connectWorker(target);
  try {
    const worker = await createOnnxWorker({
      connection,
      namespace,
      onnxQueue: opts.onnxQueue,
      threads,
      version: opts.version,
    });
    console.log(
      `wmss onnx worker @ ${workerHost()} serving ${worker.options.taskQueue} at ${address} (namespace ${namespace}, ${target.security}, ${threads ?? defaultOnnxThreads()} threads)`,
    );
    await runWorkers([worker]);
  } finally {
    await releaseOnnxSessions();
    await connection.close();
  }
}
