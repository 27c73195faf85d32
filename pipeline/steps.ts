/**
 * The step table: the single source of truth for what the pipeline runs. One row per step:
 * its activity, queue kind, dependencies, timeouts, retry policy, inputs and outputs.
 * The workflow walks this graph; `wmss plan` prints it; the README's table is generated from it.
 */
import { z } from 'zod';
import * as A from './artifacts';
import type { RunConfig } from './config';
import { NON_RETRYABLE_ERROR_TYPES } from './errors';

export const STEP_IDS = ['entropy0', 'sft', 'snapshot', 'entropy1', 'merge', 'fuse', 'joint', 'extract', 'evaluate', 'onnxBase', 'onnxM1', 'onnxWmss'] as const;
export const StepId = z.enum(STEP_IDS);
export type StepId = z.infer<typeof StepId>;

/** Activity names; each takes a StepInput and returns a StepResult. */
export const ACTIVITY_NAMES = ['computeEntropy', 'trainSft', 'snapshotBase', 'mergeAndWeight', 'fuseModels', 'trainJoint', 'extractSubmodel', 'evaluate', 'exportOnnx'] as const;
export type ActivityName = (typeof ACTIVITY_NAMES)[number];

/**
 * gpu steps run kernels on a GPU worker; cpu steps are file transforms on the control worker;
 * onnx: steps whose `backend` is onnx for a config run on an onnx worker (no Python).
 */
export type QueueKind = 'gpu' | 'cpu' | 'onnx';

/** A Temporal duration string ('90s', '10m', '14d'), kept as text so the table stays plain data. */
type Duration = `${number}${'s' | 'm' | 'h' | 'd'}`;

export interface StepRow {
  id: StepId;
  /** The number the original script and the paper use ("5a", "5b" for the two halves of step 5). */
  number: string;
  title: string;
  activity: ActivityName;
  queue: QueueKind;
  needs: StepId[];
  /** Human-readable inputs and outputs, shown by `wmss plan` and as the activity summary. */
  inputs: (c: RunConfig) => string[];
  outputs: (c: RunConfig) => string[];
  timeouts: {
    /** Whole attempt; training steps run for days. */
    startToClose: Duration;
    /** The bridge heartbeats every few seconds while the kernel lives, so a dead worker shows within this. */
    heartbeat: Duration;
    /** A kernel alive but silent (no progress line) for this long is treated as hung. */
    stall: Duration;
  };
  retry: { maximumAttempts: number; initialInterval: Duration; maximumInterval: Duration; backoffCoefficient: number };
  /** Whether a config runs this step at all (default: always). A step left out counts as done for the steps that need it, which then get no result for it. */
  when?: (c: RunConfig) => boolean;
  /** Inference backend of this step for a config; 'onnx' sends it to the onnx queue. */
  backend?: (c: RunConfig) => 'torch' | 'onnx';
}

// The first retry comes quickly: after a lost worker the heartbeat timeout has already passed, and
// after a crash the kernel's processes are gone (the bridge waits for them); then 4 s, 16 s, 64 s.
const GPU_RETRY = { maximumAttempts: 5, initialInterval: '1s', maximumInterval: '5m', backoffCoefficient: 4 } as const;
const CPU_RETRY = { maximumAttempts: 5, initialInterval: '2s', maximumInterval: '1m', backoffCoefficient: 2 } as const;
const TRAINING_TIMEOUTS = { startToClose: '14d', heartbeat: '60s', stall: '30m' } as const;
const SCORING_TIMEOUTS = { startToClose: '3d', heartbeat: '60s', stall: '20m' } as const;
const FILE_TIMEOUTS = { startToClose: '12h', heartbeat: '60s', stall: '10m' } as const;

export const STEPS: readonly StepRow[] = [
  {
    id: 'entropy0', number: '0', title: 'entropy of the base model', activity: 'computeEntropy', queue: 'gpu', needs: ['onnxBase'],
    inputs: (c) => [c.baseModel, c.dataFile], outputs: () => [A.ENTROPY_0],
    timeouts: SCORING_TIMEOUTS, retry: GPU_RETRY, backend: (c) => c.entropy.backend,
  },
  {
    id: 'sft', number: '1', title: 'Stage-1 SFT of the base → m1', activity: 'trainSft', queue: 'gpu', needs: [],
    inputs: (c) => [c.baseModel, c.dataFile], outputs: () => [`${A.STAGE1_DIR}/checkpoint-N`],
    timeouts: TRAINING_TIMEOUTS, retry: GPU_RETRY,
  },
  {
    id: 'snapshot', number: '4', title: 'snapshot of the base model (weak branch m0)', activity: 'snapshotBase', queue: 'cpu', needs: [],
    inputs: (c) => [c.baseModel], outputs: () => [A.STAGE0_DIR],
    timeouts: FILE_TIMEOUTS, retry: CPU_RETRY,
  },
  {
    id: 'entropy1', number: '2', title: 'entropy of m1', activity: 'computeEntropy', queue: 'gpu', needs: ['sft', 'onnxM1'],
    inputs: (c) => [`${A.STAGE1_DIR}/checkpoint-N`, c.dataFile], outputs: () => [A.ENTROPY_1],
    timeouts: SCORING_TIMEOUTS, retry: GPU_RETRY, backend: (c) => c.entropy.backend,
  },
  {
    id: 'merge', number: '3', title: 'merge entropies, sample weights, weighted resample', activity: 'mergeAndWeight', queue: 'cpu', needs: ['entropy0', 'entropy1'],
    inputs: () => [A.ENTROPY_0, A.ENTROPY_1],
    outputs: () => [A.ENTROPY_MERGED, A.SAMPLE_WEIGHTS, A.RESAMPLED_POSITIONS, A.RESAMPLE_STATS],
    timeouts: FILE_TIMEOUTS, retry: CPU_RETRY,
  },
  {
    id: 'fuse', number: '5a', title: 'fuse m0 + m1 into one checkpoint', activity: 'fuseModels', queue: 'cpu', needs: ['snapshot', 'sft'],
    inputs: () => [A.STAGE0_DIR, `${A.STAGE1_DIR}/checkpoint-N`], outputs: () => [A.FUSED_INIT_DIR],
    timeouts: FILE_TIMEOUTS, retry: CPU_RETRY,
  },
  {
    id: 'joint', number: '5b', title: 'joint training on the resampled data', activity: 'trainJoint', queue: 'gpu', needs: ['fuse', 'merge'],
    inputs: (c) => [A.FUSED_INIT_DIR, A.RESAMPLED_POSITIONS, c.dataFile], outputs: (c) => [`${A.stage3Dir(c)}/checkpoint-N`],
    timeouts: TRAINING_TIMEOUTS, retry: GPU_RETRY,
  },
  {
    id: 'extract', number: '6', title: 'extract one sub-model', activity: 'extractSubmodel', queue: 'cpu', needs: ['joint'],
    inputs: (c) => [`${A.stage3Dir(c)}/checkpoint-N`], outputs: (c) => [A.extractedDir(c)],
    timeouts: FILE_TIMEOUTS, retry: CPU_RETRY,
  },
  {
    id: 'evaluate', number: '7', title: 'evaluate on math benchmarks', activity: 'evaluate', queue: 'gpu', needs: ['extract', 'snapshot', 'sft', 'onnxWmss', 'onnxBase', 'onnxM1'],
    inputs: (c) => [A.extractedDir(c), ...c.eval.datasets.map((d) => d.path)], outputs: () => [`${A.RESULTS_DIR}/<model>/<dataset>.jsonl`, `${A.RESULTS_DIR}/summary.json`],
    timeouts: SCORING_TIMEOUTS, retry: GPU_RETRY, backend: (c) => c.eval.backend,
  },
  // ONNX exports for the onnx backend (docs/onnx.md): only in configs that use it.
  {
    id: 'onnxBase', number: '0x', title: 'export the base model to ONNX', activity: 'exportOnnx', queue: 'gpu', needs: [],
    inputs: (c) => [c.baseModel], outputs: () => [A.ONNX_BASE],
    timeouts: FILE_TIMEOUTS, retry: GPU_RETRY, when: (c) => onnxExport(c, 'base'),
  },
  {
    id: 'onnxM1', number: '2x', title: 'export m1 to ONNX', activity: 'exportOnnx', queue: 'gpu', needs: ['sft'],
    inputs: () => [`${A.STAGE1_DIR}/checkpoint-N`], outputs: () => [A.ONNX_M1],
    timeouts: FILE_TIMEOUTS, retry: GPU_RETRY, when: (c) => onnxExport(c, 'm1'),
  },
  {
    id: 'onnxWmss', number: '7x', title: 'export the extracted model to ONNX', activity: 'exportOnnx', queue: 'gpu', needs: ['extract'],
    inputs: (c) => [A.extractedDir(c)], outputs: () => [A.ONNX_WMSS],
    timeouts: FILE_TIMEOUTS, retry: GPU_RETRY, when: (c) => onnxExport(c, 'wmss'),
  },
];

/** Which exports a config needs: base and m1 for onnx entropy or onnx baselines, the extracted model for onnx evaluation. */
function onnxExport(c: RunConfig, model: 'base' | 'm1' | 'wmss'): boolean {
  const evalOnnx = c.eval.backend === 'onnx';
  return model === 'wmss' ? evalOnnx : c.entropy.backend === 'onnx' || (evalOnnx && c.eval.baselines);
}

/** Whether a config runs this step (its `when`, default yes). */
export function stepEnabled(row: StepRow, c: RunConfig): boolean {
  return row.when ? row.when(c) : true;
}

/** The steps a config runs, in table order. */
export function activeSteps(c: RunConfig): StepRow[] {
  return STEPS.filter((row) => stepEnabled(row, c));
}

/** The queue kind of a step under a config: onnx when its backend is onnx, else the table's. */
export function stepQueueKind(row: StepRow, c: RunConfig): QueueKind {
  return row.backend?.(c) === 'onnx' ? 'onnx' : row.queue;
}


export function stepRow(id: StepId): StepRow {
  const row = STEPS.find((s) => s.id === id);
  if (!row) throw new Error(`unknown step ${id}`);
  return row;
}

/** The one-line summary shown in the Web UI's timeline, e.g. "step 1 · Stage-1 SFT of the base → m1". */
export function stepSummary(row: StepRow): string {
  return `step ${row.number} · ${row.title}`;
}

export const nonRetryableErrorTypes: readonly string[] = NON_RETRYABLE_ERROR_TYPES;

/** What every step activity receives: the whole (small) config and the results of the steps it needs. */
export interface StepInput {
  stepId: StepId;
  config: RunConfig;
  deps: Partial<Record<StepId, StepResult>>;
}

export const StepResult = z.object({
  stepId: StepId,
  /** Host that ran the step and holds its outputs (for placement with local disks). */
  host: z.string(),
  /** True when a matching manifest made the step a verified cache hit. */
  cached: z.boolean(),
  /** Named outputs, paths relative to the run dir. */
  outputs: z.record(z.string(), z.string()),
  metrics: z.record(z.string(), z.union([z.number(), z.string()])),
  /** Cache key of the step's manifest: a digest of exactly what determines the output. */
  cacheKey: z.string(),
  durationMs: z.number(),
});
export type StepResult = z.infer<typeof StepResult>;

/** Heartbeat details of a running step, shown in the Web UI and by `wmss watch`. */
export const StepProgress = z.object({
  done: z.number(),
  total: z.number(),
  unit: z.string(),
  loss: z.number().optional(),
  lr: z.number().optional(),
  tokensPerS: z.number().optional(),
  /** The kernel's own line on where it is, e.g. evaluate's "math500: 212/500 rows · 310442 tokens · ETA 4m10s". */
  detail: z.string().optional(),
  lastCheckpoint: z.object({ path: z.string(), step: z.number() }).optional(),
  logFile: z.string().optional(),
  /** What a step does while it has no count to report, e.g. "waiting for this worker's devices". */
  phase: z.string().optional(),
  updatedAt: z.string(),
});
export type StepProgress = z.infer<typeof StepProgress>;
