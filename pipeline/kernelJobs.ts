/**
 * The contract with the Python kernels (docs/kernel-protocol.md): the job schema of every verb,
 * the kernel version and the architecture keys both sides compare. The zod schemas here and in
 * pipeline/stepDefinitions/<step>.ts are the single source: scripts/update-readme.ts writes them as JSON
 * Schema into kernels/wmss_kernels/job_schema.json, which the kernels validate jobs against
 * (wmss_kernels/jobs.py), and test/unit/jobSchema.test.ts fails when the file is stale.
 * Field names are snake_case because Python reads them; unknown keys are refused on both sides.
 */
import { z } from 'zod';
import { common } from './jobFields';
import { EntropyJob } from './stepDefinitions/entropy';
import { SftJob } from './stepDefinitions/sft';
import { FusionLambda, JointJob } from './stepDefinitions/joint';
import { EvaluateJob } from './stepDefinitions/evaluate';
import { ExportOnnxJob } from './stepDefinitions/onnxExport';

/** Kernel code version; part of every GPU step's cache key so a kernel change re-runs its steps. */
export const KERNEL_VERSION = '0.3.0';

/**
 * Config keys that change the parameter shapes or the computation: the two branches of a fused
 * model are fed the same tokens, so step 5a (activities/stepActivities/fuseActivity.ts) and the joint kernel
 * (wmss_kernels/fused.py) both refuse a pair that differs in any of them.
 */
export const ARCHITECTURE_KEYS = [
  'model_type',
  'vocab_size',
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'head_dim',
  'hidden_act',
  'rms_norm_eps',
  'rope_parameters',
  'rope_theta',
  'rope_scaling',
  'attention_bias',
  'tie_word_embeddings',
  'layer_types',
  'use_sliding_window',
  'sliding_window',
] as const;

/** make-tiny: the demo's and the tests' tiny Qwen3-style model, tokenizer and arithmetic data. */
export const MakeTinyJob = z
  .object({
    ...common,
    output_dir: z.string().describe('The model directory to create.'),
    data_dir: z.string().describe('Where train.jsonl and test.jsonl go.'),
    train_samples: z.number().int().positive(),
    test_samples: z.number().int().positive(),
    vocab_size: z.number().int().positive().default(512),
    hidden_size: z.number().int().positive().default(64),
    num_layers: z.number().int().positive().default(2),
    num_heads: z.number().int().positive().default(4),
    num_kv_heads: z.number().int().positive().default(2),
    intermediate_size: z.number().int().positive().default(256),
    max_digits: z.number().int().positive().default(2),
    head_dim: z.number().int().positive().nullable().optional().describe('null: hidden_size / num_heads.'),
    max_position_embeddings: z.number().int().positive().default(512),
    tie_word_embeddings: z.boolean().default(false),
    pretrain_steps: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe('Pre-training steps on the easier corpus (kernels/wmss_kernels/pretrain.py); 0: a random base.'),
    pretrain_lr: z.number().positive().default(3e-3).describe('Peak learning rate of the pre-training.'),
    pretrain_batch: z.number().int().positive().default(32).describe('Sequences per pre-training step.'),
  })
  .strict();

export { EntropyJob, EvaluateJob, ExportOnnxJob, JointJob, SftJob };

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
  z
    .object({
      type: z.literal('progress'),
      done: z.number(),
      total: z.number(),
      unit: z.string(),
      loss: z.number().nullish(),
      lr: z.number().nullish(),
      tokens_per_s: z.number().nullish(),
      epoch: z.number().nullish(),
      detail: z.string().nullish(),
    })
    .passthrough(),
  z.object({ type: z.literal('checkpoint'), path: z.string(), step: z.number() }).passthrough(),
  // A metric the kernel could not compute as a finite number arrives as null (JSON has no NaN).
  z
    .object({
      type: z.literal('result'),
      outputs: z.record(z.string(), z.string()),
      metrics: z.record(z.string(), z.union([z.number(), z.string(), z.null()])),
    })
    .passthrough(),
  z
    .object({
      type: z.literal('error'),
      error_type: z.string(),
      message: z.string(),
      reason: z.string().nullish(),
      file: z.string().nullish(),
      line: z.number().nullish(),
      field: z.string().nullish(),
      details: z.record(z.string(), z.unknown()).nullish(),
    })
    .passthrough(),
]);
export type KernelEvent = z.infer<typeof KernelEvent>;

/** Exit codes of `python -m wmss_kernels` (docs/kernel-protocol.md). */
export const KernelExit = {
  ok: 0,
  invalidInput: 2,
  outOfMemory: 3,
  terminated: 4,
  diverged: 5,
  diskFull: 6,
  notWritable: 7,
  rankLost: 8,
} as const;

/** The contents of kernels/wmss_kernels/job_schema.json. */
export function kernelContract(): Record<string, unknown> {
  return {
    $comment:
      'Generated from pipeline/kernelJobs.ts by `npm run readme` (scripts/update-readme.ts); do not edit. Read by wmss_kernels/jobs.py.',
    kernelVersion: KERNEL_VERSION,
    architectureKeys: ARCHITECTURE_KEYS,
    // the range of λ, for the value the joint kernel reads from a fused checkpoint's config.json
    fusionLambda: z.toJSONSchema(FusionLambda),
    jobs: Object.fromEntries(
      Object.entries(KERNEL_JOBS).map(([verb, schema]) => [verb, z.toJSONSchema(schema, { io: 'input' })]),
    ),
  };
}
