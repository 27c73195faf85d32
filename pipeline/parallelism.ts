/**
 * How a training step uses several GPUs (config `parallelism`), and the memory estimate that
 * `strategy: auto` decides by. The estimate is computed here, once, from the model's shape and
 * the step's settings; the kernel compares it with the real memory of its GPU (sharding.py,
 * FIT_FRACTION) and picks FSDP when the DDP footprint does not fit. A coarse upper bound: every
 * sequence at maxLength.
 */

export interface MemoryInput {
  /** Parameters of the whole model (both branches of a fused model). */
  params: number;
  /** Parameters that train (half of a fused model when the weak branch is frozen). */
  trainableParams: number;
  /** 2 for bf16, 4 for fp32: weights, gradients and AdamW moments all use it (the kernel's AdamW keeps its moments in the parameter dtype). */
  bytesPerParam: number;
  microBatch: number;
  maxLength: number;
  hiddenSize: number;
  layers: number;
  /** 2 for the fused weak+strong model (activations of each branch), else 1. */
  branches: number;
  gradientCheckpointing: boolean;
  /** GPUs of the step (ranks). */
  devices: number;
}

export interface MemoryEstimate {
  weightsGiB: number;
  gradientsGiB: number;
  optimizerGiB: number;
  activationsGiB: number;
  /** What one GPU holds under DDP: everything replicated. */
  ddpGiB: number;
  /** What one GPU holds under FSDP: weights, gradients and moments divided by the GPUs. */
  fsdpGiB: number;
}

const GiB = 2 ** 30;
/** Hidden-sized tensors a decoder layer keeps for backward (attention and the 3×-wide MLP), without recomputation. */
const SAVED_PER_LAYER = 18;

export function trainingMemory(m: MemoryInput): MemoryEstimate {
  const weights = m.params * m.bytesPerParam;
  const gradients = m.trainableParams * m.bytesPerParam;
  const optimizer = 2 * m.trainableParams * m.bytesPerParam;
  const perLayer = m.microBatch * m.maxLength * m.hiddenSize * m.bytesPerParam;
  // recomputation keeps each layer's input and rebuilds one layer's tensors at a time
  const layerActs = m.gradientCheckpointing
    ? m.layers * perLayer + SAVED_PER_LAYER * perLayer
    : m.layers * SAVED_PER_LAYER * perLayer;
  const activations = m.branches * layerActs;
  const states = weights + gradients + optimizer;
  const n = Math.max(1, m.devices);
  return {
    weightsGiB: weights / GiB,
    gradientsGiB: gradients / GiB,
    optimizerGiB: optimizer / GiB,
    activationsGiB: activations / GiB,
    ddpGiB: (states + activations) / GiB,
    fsdpGiB: (states / n + activations) / GiB,
  };
}

/** Fraction of a GPU's memory the DDP estimate may use (the same rule as the kernel's FIT_FRACTION). */
export const FIT_FRACTION = 0.85;

/** The strategy `auto` takes on GPUs of `deviceGiB` (for `wmss plan` and tests; the kernel decides with its real GPU). */
export function autoStrategy(est: MemoryEstimate, devices: number, deviceGiB: number): 'single' | 'ddp' | 'fsdp' {
  if (devices <= 1) return 'single';
  return est.ddpGiB > FIT_FRACTION * deviceGiB ? 'fsdp' : 'ddp';
}
