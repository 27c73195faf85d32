/**
 * The step table: the single source of truth for what the pipeline runs. One row per step, each
 * defined with its step (pipeline/stepDefinitions/<step>.ts: its activity, queue kind, dependencies,
 * timeouts, retry policy, inputs, outputs and code); STEPS lists them in order.
 * The workflow walks this graph; `wmss plan` prints it; the docs' tables are generated from it.
 */
import { z } from 'zod';
import type { RunConfig } from './config';
import type { GroupMember } from './groups';
import type { ResolvedModel } from './runSetupTypes';
import { NON_RETRYABLE_ERROR_TYPES } from './errors';
import { entropy0, entropy1 } from './stepDefinitions/entropy';
import { sft } from './stepDefinitions/sft';
import { snapshot } from './stepDefinitions/snapshot';
import { merge } from './stepDefinitions/merge';
import { fuse } from './stepDefinitions/fuse';
import { joint } from './stepDefinitions/joint';
import { continuedSft } from './stepDefinitions/continuedSft';
import { extract } from './stepDefinitions/extract';
import { evaluate } from './stepDefinitions/evaluate';
import { onnxBase, onnxM1, onnxWmss } from './stepDefinitions/onnxExport';

export const STEP_IDS = [
  'entropy0',
  'sft',
  'snapshot',
  'entropy1',
  'merge',
  'fuse',
  'joint',
  'continuedSft',
  'extract',
  'evaluate',
  'onnxBase',
  'onnxM1',
  'onnxWmss',
] as const;
export const StepId = z.enum(STEP_IDS);
export type StepId = z.infer<typeof StepId>;

/** Activity names; each takes a StepInput and returns a StepResult. */
export const ACTIVITY_NAMES = [
  'computeEntropy',
  'trainSft',
  'snapshotBase',
  'mergeAndWeight',
  'fuseModels',
  'trainJoint',
  'trainContinuedSft',
  'extractSubmodel',
  'evaluate',
  'exportOnnx',
] as const;
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
  /** With `when`: which configs run the step, as the docs' tables say it (default: onnx configs). */
  whenText?: string;
  /** Inference backend of this step for a config; 'onnx' sends it to the onnx queue. */
  backend?: (c: RunConfig) => 'torch' | 'onnx';
  /** Where the step's code is, relative to the repository root: TypeScript, and the Python kernel if any. */
  code: { ts: string[]; kernel: string[] };
}

/** Table order: the workflow schedules ready steps in this order. */
export const STEPS: readonly StepRow[] = [
  entropy0,
  sft,
  snapshot,
  entropy1,
  merge,
  fuse,
  joint,
  continuedSft,
  extract,
  evaluate,
  onnxBase,
  onnxM1,
  onnxWmss,
];

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
  /** A member of a multi-node training group (pipeline/groups.ts); absent on one host. */
  group?: GroupMember;
  /** Hugging Face ids of the config resolved by the run's set-up (config key → model); config.baseModel is then its snapshot dir. */
  models?: Record<string, ResolvedModel>;
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
