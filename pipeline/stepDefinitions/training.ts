/**
 * What Stage-1 SFT (step 1, ../sft) and joint training (step 5b, ../joint) share: the training
 * hyper-parameters of their config sections, the fields of their kernel jobs, and how the one
 * becomes the other. Both kernels run kernels/wmss_kernels/train_loop.py. Sandbox-safe.
 */
import { z } from 'zod';
import { countUpTo, MAX, seed, unitFraction } from '../configFields';
import { common, DataFormat, Dtype } from '../jobFields';

/** Hyper-parameters shared by Stage-1 SFT (step 1) and joint training (step 5b). */
export const trainingFields = {
  lr: z.number().positive().max(1).default(1e-5).describe('Peak learning rate of AdamW (original: 1e-5).'),
  warmupRatio: unitFraction()
    .default(0)
    .describe('Fraction of optimizer steps spent in linear warm-up (original: 0; paper v2: 0.1).'),
  weightDecay: z.number().min(0).max(10).default(0).describe('AdamW weight decay (at most 10).'),
  maxGradNorm: z.number().positive().max(MAX.weight).default(1.0).describe('Gradient clipping norm (at most 10^6).'),
  epochs: z
    .number()
    .positive()
    .max(MAX.epochs)
    .default(1)
    .describe('Epochs over the training set (original: 1; at most 1000).'),
  microBatch: countUpTo(MAX.batch).default(1).describe('Sequences per device per forward pass (at most 65536).'),
  gradAccum: countUpTo(MAX.gradAccum)
    .default(256)
    .describe(
      'Micro-batches per optimizer step, all devices together: global batch = microBatch × gradAccum whatever the number of GPUs (each of N runs gradAccum / N; must divide). Original: 1 × 32 per GPU × 8 GPUs = 256. At most 10^6.',
    ),
  maxLength: countUpTo(MAX.tokens)
    .default(4096)
    .describe('Truncation length in tokens (original: 4096; at most 2^20).'),
  maxSteps: countUpTo(MAX.steps)
    .optional()
    .describe('Optimizer steps; default floor(N × epochs / global batch), as the original. At most 10^8.'),
  saveEvery: z
    .number()
    .int()
    .min(0)
    .max(MAX.steps)
    .default(50)
    .describe(
      'Optimizer steps between resumable checkpoints (0 = only at the end). A crash loses at most this much work.',
    ),
  keepCheckpoints: countUpTo(MAX.steps)
    .optional()
    .describe(
      'Keep only the newest N complete checkpoints (older ones are deleted as new ones complete; the newest complete one, which resume and the later steps read, is never deleted). Default: keep all. Not part of the cache key.',
    ),
  gradientCheckpointing: z
    .boolean()
    .default(true)
    .describe('Recompute activations in backward to save memory (original: on).'),
  compileLayers: z
    .boolean()
    .optional()
    .describe(
      'torch.compile each transformer block (default: on for CUDA, off on the CPU). About 2× tokens/s on a 0.6B model; costs 10–30 s of compiling when a kernel starts (docs/performance.md).',
    ),
  dtype: z.enum(['auto', 'float32', 'bfloat16']).default('auto').describe('auto = bf16 on CUDA, fp32 on CPU.'),
  seed: seed().describe('Seed of data order and initialisation (0 to 2^32−1).'),
  parallelism: z
    .object({
      strategy: z
        .enum(['auto', 'ddp', 'fsdp'])
        .default('auto')
        .describe(
          'Several GPUs: ddp replicates the model, its gradients and AdamW state on every GPU; fsdp shards them (FSDP2, one group per decoder layer; checkpoints sharded with torch.distributed.checkpoint, the final one a plain HF model); auto = fsdp when the estimated DDP footprint (pipeline/parallelism.ts) exceeds 85 % of the GPU, else ddp. One GPU or CPU: ignored, except that fsdp is refused.',
        ),
      reshardAfterForward: z
        .boolean()
        .default(true)
        .describe(
          "fsdp: free each layer's gathered weights after its forward and gather them again in backward (less memory, one more all-gather per layer).",
        ),
      cpuOffload: z
        .boolean()
        .default(false)
        .describe(
          'fsdp: keep the sharded weights, gradients and AdamW state in host memory and step the optimizer on the CPU (much slower; for models whose shards do not fit the GPUs).',
        ),
      asyncCheckpoints: z
        .boolean()
        .default(true)
        .describe(
          'fsdp: write each checkpoint before the last in the background (torch.distributed.checkpoint async_save): training waits only for the copy to host memory, and the checkpoint is published (COMPLETE) once the write has finished. false: every checkpoint synchronously.',
        ),
    })
    .strict()
    .refine((p) => !p.cpuOffload || p.strategy !== 'ddp', {
      message: 'cpuOffload needs strategy fsdp or auto (DDP keeps everything on the GPU)',
      path: ['cpuOffload'],
    })
    .default({ strategy: 'auto', reshardAfterForward: true, cpuOffload: false, asyncCheckpoints: true }),
};

/** Config keys of the training sections that are not job fields, and why. */
export const TRAINING_SKIP = [
  // which old checkpoints the activity deletes: not the training's business
  'keepCheckpoints',
] as const;
/** `parallelism.strategy` is the job's `parallelism`; the other nested keys keep their names. */
export const TRAINING_RENAME = { 'parallelism.strategy': 'parallelism' } as const;

/** Job fields of both training verbs; those built from the config get its defaults (withConfigDefaults). */
export const trainingJobShape = {
  ...common,
  data_file: z.string(),
  data_format: DataFormat,
  output_dir: z.string().describe('Where checkpoint-<step>/ directories go.'),
  max_length: z.number().int().positive(),
  // no upper bound here: the config refuses lr > 1, the kernel tests drive divergence with more
  lr: z.number().positive(),
  warmup_ratio: z.number().min(0).max(1),
  weight_decay: z.number().min(0),
  max_grad_norm: z.number().positive(),
  epochs: z.number().positive(),
  micro_batch: z.number().int().positive(),
  grad_accum: z.number().int().positive(),
  max_steps: z
    .number()
    .int()
    .positive()
    .nullable()
    .optional()
    .describe('null: floor(N × epochs / (micro_batch × grad_accum)).'),
  save_every: z.number().int().min(0),
  gradient_checkpointing: z.boolean(),
  compile_layers: z.boolean().nullable().optional().describe('null: on for CUDA, off on the CPU.'),
  dtype: Dtype,
  parallelism: z.enum(['auto', 'ddp', 'fsdp']),
  reshard_after_forward: z.boolean(),
  cpu_offload: z.boolean(),
  async_checkpoints: z.boolean(),
  memory_estimate_gib: z
    .number()
    .positive()
    .nullable()
    .optional()
    .describe(
      "The activity's DDP footprint per device (pipeline/parallelism.ts), which parallelism auto compares with the device's memory; null: unknown (auto = ddp).",
    ),
  simulate_oom: z.boolean().default(false).describe('Fault tests: fail the first step with the out-of-memory path.'),
  stop_after_steps: z
    .number()
    .int()
    .positive()
    .nullable()
    .optional()
    .describe('Tests: save at that step and exit 4 as if SIGTERM came.'),
};
