/**
 * What the activities of the two training steps (sftActivity.ts, jointActivity.ts) share around
 * their kernel: the device split of the global batch, the kernel under the out-of-memory
 * back-off, the memory estimate for `parallelism: auto`, checkpoint pruning and disk checks, and
 * the out-of-memory fault of the tests.
 */
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../pipeline/errors';
import type { RunConfig } from '../../pipeline/config';
import { trainingMemory } from '../../pipeline/parallelism';
import type { StepInput, StepProgress } from '../../pipeline/steps';
import { heartbeat, relativeToRun, type GpuRuntime, type JobOf } from '../gpuRuntime';
import { withOomBackoff, type BatchLayout } from '../oomBackoff';
import type { ResolvedRun } from '../runPaths';
import { serveCheckpointRequests } from '../runControlPoller';
import { completeCheckpoints, pruneCheckpoints, requireDiskSpace, trainingEstimate } from '../store/diskSpace';

export type Training = RunConfig['sft'] | RunConfig['joint'];

/** fsdp needs several devices; the global batch (microBatch × gradAccum) is split over n of them, so n must divide gradAccum. */
export function checkSplit(t: Training, field: 'sft' | 'joint', n: number): void {
  if (t.parallelism.strategy === 'fsdp' && n <= 1) {
    throw ApplicationFailure.create({
      type: ErrorTypes.InvalidConfig,
      nonRetryable: true,
      message: `${field}.parallelism.strategy: fsdp shards the model over several GPUs, and this worker runs the step on one device (a single GPU or a CPU-only worker); use auto or ddp, or a worker with several GPUs`,
      details: [{ file: null, line: null, field: `${field}.parallelism.strategy` }],
    });
  }
  if (t.gradAccum % n === 0) return;
  throw ApplicationFailure.create({
    type: ErrorTypes.InvalidInput,
    nonRetryable: true,
    message: `${field}.gradAccum ${t.gradAccum} cannot be split over the ${n} GPUs of this worker: the global batch (microBatch × gradAccum = ${t.microBatch * t.gradAccum}) stays the same on any number of GPUs, so gradAccum must be a multiple of ${n}; change it, or run the step on a worker whose device count divides it`,
  });
}

/** Ranks of the step: this worker's devices, times the members of a multi-node group (same devices on every member). */
export function worldSize(rt: GpuRuntime, input: StepInput): number {
  return rt.devices * (input.group?.count ?? 1);
}

/** Bytes of one parameter in training: fp32 when asked for or when auto runs on the CPU, else bf16. */
export function bytesPerParam(rt: GpuRuntime, input: StepInput, t: Training): number {
  return t.dtype === 'float32' || (t.dtype === 'auto' && rt.device(input.config) === 'cpu') ? 4 : 2;
}

/**
 * The DDP footprint of one GPU (pipeline/parallelism.ts) that `parallelism.strategy: auto` is
 * decided by in the kernel; null when the model's config.json lacks its shape.
 */
export async function memoryEstimateGiB(
  modelDir: string,
  t: Training,
  model: { params: number; trainable: number; branches: number },
  devices: number,
  bytes: number,
): Promise<number | null> {
  let cfg: { hidden_size?: unknown; num_hidden_layers?: unknown };
  try {
    cfg = JSON.parse(await fsp.readFile(path.join(modelDir, 'config.json'), 'utf8'));
  } catch {
    return null;
  }
  if (typeof cfg.hidden_size !== 'number' || typeof cfg.num_hidden_layers !== 'number') return null;
  const est = trainingMemory({
    params: model.params,
    trainableParams: model.trainable,
    bytesPerParam: bytes,
    microBatch: t.microBatch,
    maxLength: t.maxLength,
    hiddenSize: cfg.hidden_size,
    layers: cfg.num_hidden_layers,
    branches: model.branches,
    gradientCheckpointing: t.gradientCheckpointing,
    devices,
  });
  return Math.round(est.ddpGiB * 100) / 100;
}

/**
 * Disk safety of a training step (activities/store/diskSpace.ts): prune to keepCheckpoints,
 * check the free space against the checkpoints still to write, and prune again each time the
 * kernel reports a new complete checkpoint and once it is done (before the manifest records
 * the output dir).
 */
export async function trainingDisk(
  rt: GpuRuntime,
  input: StepInput,
  t: Training,
  outputDir: string,
  model: { params: number; trainable: number },
  rows: () => Promise<number>,
) {
  await pruneCheckpoints(outputDir, t.keepCheckpoints);
  const complete = await completeCheckpoints(outputDir);
  const totalSteps = t.maxSteps ?? Math.floor(((await rows()) * t.epochs) / (t.microBatch * t.gradAccum));
  const estimate = trainingEstimate({
    params: model.params,
    trainableParams: model.trainable,
    bytesPerParam: bytesPerParam(rt, input, t),
    totalSteps,
    saveEvery: t.saveEvery,
    keepCheckpoints: t.keepCheckpoints,
    resumeStep: complete.at(-1)?.step ?? 0,
    existing: complete.length,
  });
  await requireDiskSpace(input.config, input.stepId, outputDir, estimate);
  let seen = complete.at(-1)?.step;
  let pruning: Promise<unknown> = Promise.resolve();
  const prune = () =>
    (pruning = pruning.then(() => pruneCheckpoints(outputDir, t.keepCheckpoints)).catch(() => undefined));
  return {
    onProgress: (p: StepProgress) => {
      heartbeat(p);
      const step = p.lastCheckpoint?.step;
      if (t.keepCheckpoints && step !== undefined && step !== seen) {
        seen = step;
        void prune();
      }
    },
    /** Last prune, after the kernel: the manifest then records the kept checkpoints only. */
    async finish(): Promise<void> {
      await pruning;
      await pruneCheckpoints(outputDir, t.keepCheckpoints);
    },
  };
}

/** keepCheckpoints is not part of the cache key: it changes which old checkpoints stay, not the result. */
export function withoutRetention<T extends { keepCheckpoints?: number }>(t: T): Omit<T, 'keepCheckpoints'> {
  const { keepCheckpoints: _ignored, ...rest } = t;
  return rest;
}

/**
 * Fault injection for the out-of-memory tests: WMSS_FAULT_OOM=<step id> makes that step's first
 * attempt (before any halving) raise the kernel's out-of-memory path.
 */
export function simulatedOom(input: StepInput, layout: BatchLayout): { simulate_oom?: boolean } {
  return process.env.WMSS_FAULT_OOM === input.stepId && layout.halvings === 0 ? { simulate_oom: true } : {};
}

/**
 * The training kernel of step 1 or 5b under the out-of-memory back-off: each attempt runs with
 * the batch layout the back-off chose, the memory estimate for that layout and the disk watch;
 * the step's output is the kernel's last checkpoint.
 */
export function trainToCheckpoint<V extends 'sft' | 'joint', T extends Training>(
  rt: GpuRuntime,
  input: StepInput,
  run: ResolvedRun,
  kernel: { verb: V; t: T; configKeys: Record<string, string>; job: (laidOut: T) => JobOf<V> },
  model: { dir: string; params: number; trainable: number; branches: number },
  disk: Awaited<ReturnType<typeof trainingDisk>>,
) {
  return withOomBackoff(run.runDir, input.stepId, kernel.t, async (layout) => {
    const laidOut: T = { ...kernel.t, microBatch: layout.microBatch, gradAccum: layout.gradAccum };
    const world = worldSize(rt, input);
    const memory = await memoryEstimateGiB(model.dir, laidOut, model, world, bytesPerParam(rt, input, kernel.t));
    const job = { ...kernel.job(laidOut), ...simulatedOom(input, layout), memory_estimate_gib: memory };
    const out = await rt.kernel(input, run, kernel.verb, job, {
      processes: rt.devices,
      group: input.group,
      onProgress: disk.onProgress,
      configKeys: kernel.configKeys,
      // `wmss checkpoint`: requests from the workflow reach this kernel (activities/runControlPoller.ts)
      onStarted: (running) => serveCheckpointRequests(input.stepId, running),
    });
    await disk.finish();
    return {
      metrics: { ...out.metrics, oom_halvings: layout.halvings },
      outputs: { checkpoint: relativeToRun(run, out.outputs.checkpoint) },
    };
  });
}
