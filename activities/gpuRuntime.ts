/**
 * What every GPU step (0, 1, 2, 5b, 7 and the ONNX exports) runs its kernels with: the claim on
 * the worker's devices, the job and log files of a launch, torchrun for training on several GPUs,
 * one kernel per GPU for the scoring steps (merged by the step, activities/deviceShards.ts), and
 * heartbeats. The steps (activities/stepActivities/<step>Activity.ts) build jobs; this module runs them.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import * as A from '../pipeline/artifacts';
import { trackingJob } from '../pipeline/trackingConfig';
import type { RunConfig } from '../pipeline/config';
import { memberTag, type GroupMember } from '../pipeline/groups';
import type { KernelJob, KernelVerb } from '../pipeline/kernelJobs';
import type { StepInput, StepProgress } from '../pipeline/steps';
import { stepRow } from '../pipeline/steps';
import { kernelEnv, type DeviceSet } from './deviceSet';
import { runShards, shardEnvs, sumProgress } from './deviceShards';
import { kernelFaultEnv } from './faults';
import { runKernel, type KernelOutcome } from './kernelBridge';
import type { ResolvedRun } from './runPaths';
import type { RunningKernel } from './kernelSaveRequests';
import { asShutdownFailure, killGraceFor } from './workerShutdown';

export interface GpuWorkerContext {
  devices: DeviceSet;
  /** Serialises GPU activities of one worker across its task queues: one kernel owns the devices at a time. */
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  /** CPU threads per kernel (torch.set_num_threads); unset = torch's default (all cores). */
  threads?: number;
}

/** A job as a step builds it: the runtime adds the log file, the device and (unless given) the seed. */
export type JobOf<V extends KernelVerb> = Omit<KernelJob<V>, 'log_file' | 'device' | 'seed'> & { seed?: number };

export interface LaunchOptions {
  /** torchrun ranks (training on several GPUs). */
  processes?: number;
  /** Environment instead of the whole device set's (a shard's single GPU). */
  env?: Record<string, string>;
  /** Suffix of the job and log file names ("shard-1-of-4"). */
  tag?: string;
  onProgress?: (p: StepProgress) => void;
  cancelled?: Promise<never>;
  /** Job field → config key (pipeline/jobMapping.ts configKeys), so kernel errors name what the user wrote. */
  configKeys?: Record<string, string>;
  /** A member of a multi-node group (pipeline/groups.ts): torchrun joins member 0's rendezvous. */
  group?: GroupMember;
  /** The running kernel's save-on-request handle (training: activities/runControlPoller.ts). */
  onStarted?: (kernel: RunningKernel) => void;
}

export interface GpuRuntime {
  /** Devices a kernel of this worker may use at once: the GPUs it owns, or the CPU as one. */
  devices: number;
  /** Where the kernels of a run go: the CPU when the worker has no GPU or the config says so. */
  device(config: RunConfig): 'cpu' | 'cuda';
  /** One kernel process (or torchrun with opts.processes ranks), once the devices are free. */
  kernel<V extends KernelVerb>(
    input: StepInput,
    run: ResolvedRun,
    verb: V,
    job: JobOf<V>,
    opts?: LaunchOptions,
  ): Promise<KernelOutcome>;
  /** One kernel per device, each on shard i of N of the items (`jobOf` gives shard i its job); progress summed. */
  sharded<V extends KernelVerb>(
    input: StepInput,
    run: ResolvedRun,
    verb: V,
    jobOf: (shard: { index: number; count: number }) => JobOf<V>,
    configKeys?: Record<string, string>,
  ): Promise<KernelOutcome[]>;
}

/** Heartbeat of the current activity; nothing outside one (direct calls in tests). */
export function heartbeat(details: unknown): void {
  try {
    Context.current().heartbeat(details);
  } catch {
    // not inside an activity
  }
}

function cancelledSignal(): Promise<never> | undefined {
  try {
    return Context.current().cancelled;
  } catch {
    return undefined;
  }
}

function attempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1;
  }
}

function durationMs(text: string): number {
  const value = Number(text.slice(0, -1));
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[text.slice(-1) as 's' | 'm' | 'h' | 'd'];
  return value * unit;
}

/** Stall limit: the step table's, unless the config's timeouts.stallSeconds overrides it. */
function stallMs(input: StepInput): number {
  const override = input.config.timeouts.stallSeconds;
  return override ? override * 1000 : durationMs(stepRow(input.stepId).timeouts.stall);
}

/** The stall limit of a kernel that is not expected to print progress (a group member other than 0). */
const NEVER_STALLS = Number.MAX_SAFE_INTEGER / 2;

/** Which kernel a test fault (activities/faults.ts) names: the step, or `<step>.member-<i>` for group members other than 0. */
function faultKey(input: StepInput): string {
  return input.group && input.group.index > 0 ? `${input.stepId}.member-${input.group.index}` : input.stepId;
}

/** Devices a kernel of this worker may use at once: the GPUs it owns, or the CPU as one. */
export function deviceCount(devices: DeviceSet): number {
  return devices.kind === 'cuda' ? devices.ids.length : 1;
}

/** A path under the run dir as a step output names it ('/'-separated, relative). */
export function relativeToRun(run: ResolvedRun, p: string): string {
  return path.relative(run.runDir, p).split(path.sep).join('/');
}

export function gpuRuntime(ctx: GpuWorkerContext): GpuRuntime {
  const device = (config: RunConfig) => (ctx.devices.kind === 'cpu' || config.device === 'cpu' ? 'cpu' : 'cuda');

  /** One kernel process (or torchrun) for a step; the caller holds the devices. */
  function launch<V extends KernelVerb>(
    input: StepInput,
    run: ResolvedRun,
    verb: V,
    job: JobOf<V>,
    opts: LaunchOptions = {},
  ): Promise<KernelOutcome> {
    const tags = [opts.tag, opts.group && memberTag(opts.group)].filter(Boolean);
    const tag = tags.length ? `.${tags.join('.')}` : '';
    const full = {
      ...job,
      log_file: path.join(run.runDir, A.LOGS_DIR, `${input.stepId}${tag}.log`),
      device: device(input.config),
      seed: job.seed ?? 42,
      threads: ctx.threads ?? null,
      // TensorBoard / MLflow / W&B of this kernel (pipeline/trackingConfig.ts); a shard logs apart
      tracking: input.config.tracking
        ? trackingJob(input.config.tracking, run.runDir, input.config.runName, input.stepId, opts.tag)
        : null,
    } as KernelJob<V>;
    return runKernel(verb, full, {
      jobFile: path.join(run.runDir, A.JOBS_DIR, `${input.stepId}.attempt-${attempt()}${tag}.json`),
      // WMSS_FAULT_KERNEL arms a test-only kernel fault (activities/faults.ts); empty otherwise
      env: { ...(opts.env ?? kernelEnv(ctx.devices)), ...kernelFaultEnv(run.runDir, faultKey(input)) },
      // members other than 0 print no progress (global rank 0, on member 0, does): member 0's
      // stall limit watches the whole group, whose ranks wait on one another
      stallMs: opts.group && opts.group.index > 0 ? NEVER_STALLS : stallMs(input),
      onHeartbeat: opts.onProgress ?? ((p: StepProgress) => heartbeat(p)),
      cancelled: opts.cancelled ?? cancelledSignal(),
      processes: opts.processes,
      group: opts.group,
      configKeys: opts.configKeys,
      onStarted: opts.onStarted,
      // a worker shutdown gets its own grace and fails the attempt as retryable WorkerShutdown
      killGraceMs: killGraceFor,
      mapCancellation: (err, progress) => asShutdownFailure(err, input.stepId, progress),
    });
  }

  /**
   * Runs `fn` once this worker's devices are free. Tasks of a host-pinned queue are accepted at
   * once and wait here (workers/createWorkers.ts), heartbeating so that the wait is not taken
   * for a dead worker; a task cancelled while waiting never starts its kernel.
   */
  async function withDevices<T>(fn: () => Promise<T>): Promise<T> {
    const waiting = setInterval(
      () =>
        heartbeat({
          done: 0,
          total: 0,
          unit: 'samples',
          phase: "waiting for this worker's devices",
          updatedAt: new Date().toISOString(),
        }),
      5000,
    );
    let cancelledWhileWaiting: unknown;
    cancelledSignal()?.catch((err) => (cancelledWhileWaiting ??= err));
    return ctx.exclusive(async () => {
      clearInterval(waiting);
      if (cancelledWhileWaiting !== undefined) throw cancelledWhileWaiting as Error; // a CancelledFailure
      return fn();
    });
  }

  return {
    devices: deviceCount(ctx.devices),
    device,
    kernel: (input, run, verb, job, opts) => withDevices(() => launch(input, run, verb, job, opts)),
    sharded(input, run, verb, jobOf, configKeys) {
      const envs = shardEnvs(ctx.devices);
      const progress: (StepProgress | undefined)[] = [];
      return withDevices(() =>
        runShards(envs.length, cancelledSignal(), (index, cancelled) =>
          launch(input, run, verb, jobOf({ index, count: envs.length }), {
            env: envs[index],
            tag: `shard-${index}-of-${envs.length}`,
            cancelled,
            configKeys,
            onProgress: (p) => {
              progress[index] = p;
              heartbeat(sumProgress(progress));
            },
          }),
        ),
      );
    },
  };
}
