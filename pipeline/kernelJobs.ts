/**
 * Job files the activities write for the Python kernels (docs/kernel-protocol.md).
 * Field names are snake_case because Python reads them; wmss_kernels/jobs.py checks the same
 * fields, and unknown keys are refused on both sides.
 */
import { z } from 'zod';

const common = {
  log_file: z.string(),
  device: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
  seed: z.number().int().default(42),
  threads: z.number().int().positive().nullable().optional(),
};

export const EntropyJob = z
  .object({
    ...common,
    model_path: z.string(),
    data_file: z.string(),
    data_format: z.enum(['messages', 'gsm8k']),
    output_path: z.string(),
    field: z.enum(['entropy_0', 'entropy_1']),
    definition: z.enum(['shifted', 'repo']),
    max_length: z.number().int().positive(),
    batch_tokens: z.number().int().positive(),
    vocab_chunk: z.number().int().positive(),
    dtype: z.enum(['auto', 'float32', 'bfloat16']).default('auto'),
    shard: z.object({ index: z.number().int().min(0), count: z.number().int().positive() }).nullable().optional(),
    limit: z.number().int().positive().nullable().optional(),
  })
  .strict();

const training = {
  ...common,
  data_file: z.string(),
  data_format: z.enum(['messages', 'gsm8k']),
  output_dir: z.string(),
  max_length: z.number().int().positive(),
  lr: z.number().positive(),
  warmup_ratio: z.number().min(0).max(1),
  weight_decay: z.number().min(0),
  max_grad_norm: z.number().positive(),
  epochs: z.number().positive(),
  micro_batch: z.number().int().positive(),
  grad_accum: z.number().int().positive(),
  max_steps: z.number().int().positive().nullable().optional(),
  save_every: z.number().int().min(0),
  gradient_checkpointing: z.boolean(),
  compile_layers: z.boolean().nullable().optional(),
  dtype: z.enum(['auto', 'float32', 'bfloat16']),
  simulate_oom: z.boolean().optional(),
  stop_after_steps: z.number().int().positive().nullable().optional(),
  parallelism: z.enum(['auto', 'ddp', 'fsdp']).optional(),
  memory_estimate_gib: z.number().positive().nullable().optional(),
  reshard_after_forward: z.boolean().optional(),
  cpu_offload: z.boolean().optional(),
};

export const SftJob = z
  .object({ ...training, model_path: z.string(), system_prompt: z.string().nullable().optional() })
  .strict();

export const JointJob = z
  .object({
    ...training,
    fused_dir: z.string().nullable().optional(),
    weak_path: z.string().nullable().optional(),
    strong_path: z.string().nullable().optional(),
    indices_file: z.string(),
    fusion_lambda: z.number().min(0).max(1),
    freeze_weak: z.boolean(),
    loss_on: z.enum(['all', 'completion']),
  })
  .strict();

export const EvaluateJob = z
  .object({
    ...common,
    model_path: z.string(),
    label: z.string(),
    output_dir: z.string(),
    datasets: z.array(
      z
        .object({
          name: z.string(),
          path: z.string(),
          format: z.enum(['gsm8k', 'json', 'jsonl']),
          expected_rows: z.number().int().positive().nullable().optional(),
          max_input_tokens: z.number().int().positive(),
          max_new_tokens: z.number().int().positive(),
          limit: z.number().int().positive().nullable().optional(),
        })
        .strict(),
    ),
    batch_size: z.number().int().positive(),
    system_prompt: z.string().nullable().optional(),
    enable_thinking: z.boolean(),
    /** One of N devices: the questions whose id mod count is index (merged by the activity). */
    shard: z.object({ index: z.number().int().min(0), count: z.number().int().positive() }).nullable().optional(),
  })
  .strict();

export const MakeTinyJob = z
  .object({
    ...common,
    output_dir: z.string(),
    data_dir: z.string(),
    train_samples: z.number().int().positive(),
    test_samples: z.number().int().positive(),
    vocab_size: z.number().int().positive().optional(),
    hidden_size: z.number().int().positive().optional(),
    num_layers: z.number().int().positive().optional(),
    num_heads: z.number().int().positive().optional(),
    num_kv_heads: z.number().int().positive().optional(),
    intermediate_size: z.number().int().positive().optional(),
    max_digits: z.number().int().positive().optional(),
    head_dim: z.number().int().positive().nullable().optional(),
    max_position_embeddings: z.number().int().positive().optional(),
    tie_word_embeddings: z.boolean().optional(),
  })
  .strict();

/** export-onnx: an HF causal LM dir → ONNX graphs (with and without KV cache) + manifest (onnx backend). */
export const ExportOnnxJob = z
  .object({
    ...common,
    model_path: z.string(),
    output_dir: z.string(),
    opset: z.number().int().min(14).optional(),
    tolerance: z.number().positive().optional(),
  })
  .strict();

export const KERNEL_JOBS = {
  entropy: EntropyJob,
  sft: SftJob,
  joint: JointJob,
  evaluate: EvaluateJob,
  'make-tiny': MakeTinyJob,
  'export-onnx': ExportOnnxJob,
} as const;
export type KernelVerb = keyof typeof KERNEL_JOBS;
export type KernelJob<V extends KernelVerb> = z.input<(typeof KERNEL_JOBS)[V]>;

/** One line of kernel stdout. */
export const KernelEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('progress'), done: z.number(), total: z.number(), unit: z.string(), loss: z.number().nullish(), lr: z.number().nullish(), tokens_per_s: z.number().nullish(), epoch: z.number().nullish(), detail: z.string().nullish() }).passthrough(),
  z.object({ type: z.literal('checkpoint'), path: z.string(), step: z.number() }).passthrough(),
  // A metric the kernel could not compute as a finite number arrives as null (JSON has no NaN).
  z.object({ type: z.literal('result'), outputs: z.record(z.string(), z.string()), metrics: z.record(z.string(), z.union([z.number(), z.string(), z.null()])) }).passthrough(),
  z.object({ type: z.literal('error'), error_type: z.string(), message: z.string(), reason: z.string().nullish(), file: z.string().nullish(), line: z.number().nullish(), field: z.string().nullish(), details: z.record(z.string(), z.unknown()).nullish() }).passthrough(),
]);
export type KernelEvent = z.infer<typeof KernelEvent>;

/** Exit codes of `python -m wmss_kernels` (docs/kernel-protocol.md). */
export const KernelExit = { ok: 0, invalidInput: 2, outOfMemory: 3, terminated: 4, diverged: 5, diskFull: 6, notWritable: 7, rankLost: 8 } as const;
