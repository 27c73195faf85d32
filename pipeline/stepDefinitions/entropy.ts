/**
 * Steps 0 and 2, entropy of the base model and of m1: table rows, the `entropy` config section,
 * and the `entropy` kernel's job. Sandbox-safe (the workflow loads the rows); the activity is
 * ./activity.ts.
 */
import { z } from 'zod';
import * as A from '../artifacts';
import { countUpTo, MAX } from '../configFields';
import { common, DataFormat, Dtype, RUN_MAPPING, Shard } from '../jobFields';
import { configKeys, jobFields, withConfigDefaults, type JobMapping } from '../jobMapping';
import type { RunConfig } from '../config';
import type { StepRow } from '../steps';
import { GPU_RETRY, SCORING_TIMEOUTS } from './policies';

export const EntropyConfig = z
  .object({
    definition: z
      .enum(['shifted', 'repo'])
      .default('shifted')
      .describe(
        "shifted = paper Eq. 7 (distributions predicting each answer token); repo = the original's unshifted positions (docs/method.md#entropy-steps-0-and-2).",
      ),
    maxLength: countUpTo(MAX.tokens)
      .default(8192)
      .describe('Truncation length for entropy scoring (original: 8192; at most 2^20).'),
    batchTokens: countUpTo(16 * MAX.tokens)
      .default(16384)
      .describe('Padded tokens per batch (length-bucketed; at most 2^24).'),
    vocabChunk: countUpTo(MAX.tokens)
      .default(1024)
      .describe(
        'Positions per chunk of the fp32 entropy computation; bounds memory for large vocabularies (at most 2^20).',
      ),
    backend: z
      .enum(['torch', 'onnx'])
      .default('torch')
      .describe(
        'torch = the PyTorch kernel on a GPU worker; onnx = onnxruntime-node on an onnx worker (CPU, no Python), after an export step (docs/onnx.md).',
      ),
  })
  .strict();

/** `backend` picks the worker that runs the step, not a kernel setting. */
export const ENTROPY_MAPPING: JobMapping = { section: 'entropy', schema: EntropyConfig, skip: ['backend'] };

const entropyJobShape = {
  ...common,
  model_path: z.string(),
  data_file: z.string(),
  data_format: DataFormat,
  output_path: z
    .string()
    .describe('JSONL to write, one {"idx", "<field>"} line per record, sorted by idx (temporary file, then rename).'),
  field: z.enum(['entropy_0', 'entropy_1']).describe('Name of the value in each output line.'),
  definition: z.enum(['shifted', 'repo']),
  max_length: z.number().int().positive(),
  batch_tokens: z.number().int().positive(),
  vocab_chunk: z.number().int().positive(),
  dtype: Dtype.default('auto').describe('auto = bf16 on CUDA, fp32 on the CPU.'),
  shard: Shard,
  limit: z.number().int().positive().nullable().optional().describe('Only the first N records (benches).'),
};
export const EntropyJob = z.object(withConfigDefaults(entropyJobShape, ENTROPY_MAPPING, RUN_MAPPING)).strict();

/** Job field → config key, so a kernel error names what the user wrote (model_path: baseModel at step 0 only). */
export const ENTROPY_CONFIG_KEYS: Record<string, string> = {
  ...configKeys(ENTROPY_MAPPING),
  ...configKeys(RUN_MAPPING),
  data_file: 'dataFile',
};

/** The entropy job of step 0 (field entropy_0) or 2 (entropy_1). */
export function entropyJob(
  config: RunConfig,
  at: { modelPath: string; dataFile: string; outputPath: string; field: 'entropy_0' | 'entropy_1' },
) {
  const job = {
    ...jobFields(ENTROPY_MAPPING, config.entropy),
    ...jobFields(RUN_MAPPING, config),
    model_path: at.modelPath,
    data_file: at.dataFile,
    output_path: at.outputPath,
    field: at.field,
  };
  return job as Omit<z.input<typeof EntropyJob>, 'log_file'>;
}

const code = {
  ts: [
    'pipeline/stepDefinitions/entropy.ts',
    'activities/stepActivities/entropyActivity.ts',
    'activities/onnx/onnxSteps.ts',
  ],
  kernel: ['kernels/wmss_kernels/entropy.py', 'kernels/wmss_kernels/heads.py'],
};

export const entropy0: StepRow = {
  id: 'entropy0',
  number: '0',
  title: 'entropy of the base model',
  activity: 'computeEntropy',
  queue: 'gpu',
  needs: ['onnxBase'],
  inputs: (c) => [c.baseModel, c.dataFile],
  outputs: () => [A.ENTROPY_0],
  timeouts: SCORING_TIMEOUTS,
  retry: GPU_RETRY,
  backend: (c) => c.entropy.backend,
  code,
};

export const entropy1: StepRow = {
  id: 'entropy1',
  number: '2',
  title: 'entropy of m1',
  activity: 'computeEntropy',
  queue: 'gpu',
  needs: ['sft', 'onnxM1'],
  inputs: (c) => [`${A.STAGE1_DIR}/checkpoint-N`, c.dataFile],
  outputs: () => [A.ENTROPY_1],
  timeouts: SCORING_TIMEOUTS,
  retry: GPU_RETRY,
  backend: (c) => c.entropy.backend,
  code,
};
