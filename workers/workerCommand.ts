/**
 * `wmss worker <kind>`, the one parser of every worker entry point: the `wmss` command line adds it
 * (client/cli.ts), and the compiled entry points `node dist/workers/control.js | gpu.js |
 * onnxWorker.js [flags]` (process managers, the fault tests) run the same command on their own
 * arguments, with the same connection flags (temporal/connection.ts).
 */
import type { WorkerDeploymentVersion } from '@temporalio/common';
import { Command } from 'commander';
import { addConnectionFlags } from '../temporal/connection';
import { installWorkerLogging } from './hostChecks';
import { startWorker } from './startWorker';
import { parseMetricsPort } from './telemetry';

export type WorkerKind = 'control' | 'gpu' | 'onnx';

const KINDS: readonly string[] = ['control', 'gpu', 'onnx'] satisfies WorkerKind[];

/**
 * The Worker Deployment Version of --deployment / --build-id (or WMSS_DEPLOYMENT / WMSS_BUILD_ID);
 * undefined without a build id: the worker is unversioned, as before Worker Versioning.
 */
export function deploymentVersion(
  deployment: string | undefined,
  buildId: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): WorkerDeploymentVersion | undefined {
  const id = buildId ?? env.WMSS_BUILD_ID;
  const name = deployment ?? env.WMSS_DEPLOYMENT ?? 'wmss';
  if (!id) {
    if (deployment) throw new Error('--deployment needs --build-id (or WMSS_BUILD_ID): the version this worker runs');
    return undefined;
  }
  for (const [flag, value] of [
    ['--build-id', id],
    ['--deployment', name],
  ])
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(value))
      throw new Error(`${flag} must be 1-100 of letters, digits, . _ - (got "${value}")`);
  return { deploymentName: name, buildId: id };
}

/** Adds `worker <kind>` to `program`; returns `program`. */
export function addWorkerCommand(program: Command): Command {
  program
    .command('worker <kind>')
    .description(
      'run a worker: control (workflows + CPU steps), gpu (kernel steps) or onnx (steps 0, 2, 7 with backend onnx; no Python). [control] [gpu] [onnx] say which kinds a flag applies to',
    )
    .option('--gpus <set>', '[gpu] devices this worker owns: cpu, or a list like 0,1 (must exist on this host)', 'cpu')
    .option('--threads <n>', '[gpu, onnx] CPU threads per kernel / onnxruntime (default: all cores)')
    .option('--control-queue <name>', '[control, gpu] control task queue', 'wmss')
    .option('--gpu-queue <name>', '[gpu] GPU task queue', 'wmss-gpu')
    .option('--onnx-queue <name>', '[onnx] its task queue', 'wmss-onnx')
    .option(
      '--pool <kind>',
      '[gpu] also serve the pool <gpu-queue>:<kind> (e.g. h100; runs choose it with placement.gpuPool)',
    )
    .option(
      '--host <name>',
      "[control, gpu] host name of this worker's host queues (<queue>@<host>); default $WMSS_HOST or the machine's name",
    )
    .option(
      '--shutdown-grace <seconds>',
      '[gpu] on SIGTERM, the time a running kernel gets to save its checkpoint before SIGKILL (default $WMSS_WORKER_SHUTDOWN_GRACE_SECONDS or 120)',
    )
    .option(
      '--build-id <id>',
      '[control, gpu, onnx] Worker Versioning: join the Worker Deployment Version <deployment>/<id>; runs stay on the version they started on (default $WMSS_BUILD_ID; unset: unversioned)',
    )
    .option(
      '--deployment <name>',
      '[control, gpu, onnx] the Worker Deployment of --build-id (default $WMSS_DEPLOYMENT or wmss)',
    )
    .option(
      '--metrics-port <port>',
      "[control, gpu, onnx] serve Prometheus metrics (the SDK's and the steps') at http://0.0.0.0:<port>/metrics; off unless given",
    )
    .option('--verbose', "[control, gpu, onnx] the SDK's info logs too (workflow bundling, pollers)")
    .action(async (kind: string, o) => {
      if (!KINDS.includes(kind)) throw new Error(`worker kind must be control, gpu or onnx, not "${kind}"`);
      if (o.shutdownGrace !== undefined) {
        const s = Number(o.shutdownGrace);
        if (!Number.isFinite(s) || s <= 0)
          throw new Error(`--shutdown-grace must be a number of seconds > 0, not "${o.shutdownGrace}"`);
        // read by the kernel bridge of this process (activities/workerShutdown.ts)
        process.env.WMSS_WORKER_SHUTDOWN_GRACE_SECONDS = String(s);
      }
      const metrics = o.metricsPort ? { port: parseMetricsPort(o.metricsPort) } : undefined;
      installWorkerLogging(Boolean(o.verbose), metrics);
      const version = deploymentVersion(o.deployment, o.buildId);
      if (kind === 'onnx') {
        // onnxruntime-node in this process, no kernels (docs/onnx.md); loaded only by this kind
        const { startOnnxWorker } = await import('./startOnnxWorker');
        return startOnnxWorker({ onnxQueue: o.onnxQueue, threads: o.threads, version });
      }
      await startWorker(kind as 'control' | 'gpu', {
        gpus: o.gpus,
        threads: o.threads,
        controlQueue: o.controlQueue,
        gpuQueue: o.gpuQueue,
        pool: o.pool,
        host: o.host,
        version,
      });
    });
  return program;
}

/** A compiled entry point: `wmss worker <kind>` on this process's arguments; exits 1 on an error. */
export function runWorkerEntryPoint(kind: WorkerKind, argv: string[] = process.argv.slice(2)): void {
  const program = addWorkerCommand(addConnectionFlags(new Command('wmss').showHelpAfterError()));
  program.parseAsync(['worker', kind, ...argv], { from: 'user' }).catch((err) => {
    console.error(`wmss ${kind} worker: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
