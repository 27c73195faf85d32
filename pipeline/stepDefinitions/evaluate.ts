/**
 * Step 7, evaluate on math benchmarks: table row, the `eval` config section, and the `evaluate`
 * kernel's job. Sandbox-safe (the workflow loads the row); the activity is ./activity.ts.
 */
import { z } from 'zod';
import * as A from '../artifacts';
import { countUpTo, MAX } from '../configFields';
import { common, Shard } from '../jobFields';
import { configKeys, jobFields, withConfigDefaults, type JobMapping } from '../jobMapping';
import type { RunConfig } from '../config';
import type { StepRow } from '../steps';
import { GPU_RETRY, SCORING_TIMEOUTS } from './policies';

export const EvalDatasetConfig = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, . _ - only')
      // the evaluate kernel writes <name>.jsonl beside summary.json
      .refine((n) => !['.', '..', 'summary'].includes(n), "must be a plain file name other than 'summary'"),
    path: z.string().min(1).describe('File path, or bundled:gsm8k for the GSM8K test split shipped with wmss-flow.'),
    format: z.enum(['gsm8k', 'json', 'jsonl']).default('gsm8k'),
    expectedRows: countUpTo(MAX.rows).optional().describe('Abort if the file has another number of rows.'),
    maxInputTokens: countUpTo(MAX.tokens).default(4096).describe('At most 2^20.'),
    maxNewTokens: countUpTo(MAX.tokens).default(4096).describe('At most 2^20.'),
    limit: countUpTo(MAX.rows).optional().describe('Evaluate only the first N rows.'),
  })
  .strict();

export const EvalConfig = z
  .object({
    datasets: z
      .array(EvalDatasetConfig)
      .min(1)
      .superRefine((sets, ctx) => {
        // each set's results go to <name>.jsonl: a repeated name would overwrite the first
        sets.forEach((d, i) => {
          const first = sets.findIndex((o) => o.name === d.name);
          if (first < i) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate dataset name '${d.name}' (also eval.datasets.${first}.name)` });
        });
      })
      .describe('Each: {name, path (file or bundled:gsm8k), format gsm8k|json|jsonl, expectedRows?, maxInputTokens (4096), maxNewTokens (4096), limit?}. Default: the bundled GSM8K test split.').default([{ name: 'gsm8k', path: 'bundled:gsm8k', format: 'gsm8k', expectedRows: 1319, maxInputTokens: 4096, maxNewTokens: 4096 }]),
    batchSize: countUpTo(MAX.batch).default(16).describe('Prompts per generation batch (at most 65536).'),
    systemPrompt: z.string().optional().describe('Evaluation system prompt; default the kernel\'s (docs/method.md#prompt-formats).'),
    enableThinking: z.boolean().default(true),
    baselines: z.boolean().default(true).describe('Also evaluate the base model and m1, for the side-by-side report.'),
    backend: z.enum(['torch', 'onnx']).default('torch').describe('torch = transformers generate on a GPU worker; onnx = greedy decoding with onnxruntime-node on an onnx worker (numeric grading only; docs/onnx.md).'),
  })
  .strict();

/** `backend` and `baselines` decide where and on which models the step runs; datasets map one by one (DATASET_MAPPING). */
export const EVAL_MAPPING: JobMapping = { section: 'eval', schema: EvalConfig, skip: ['datasets', 'baselines', 'backend'] };
/** One eval.datasets entry → one entry of the job's datasets (path resolved by the activity first). */
export const DATASET_MAPPING: JobMapping = { section: 'eval.datasets[]', schema: EvalDatasetConfig };

const datasetJobShape = {
  name: z.string(),
  path: z.string().describe('A file, or bundled:gsm8k.'),
  format: z.enum(['gsm8k', 'json', 'jsonl']),
  expected_rows: z.number().int().positive().nullable().optional(),
  max_input_tokens: z.number().int().positive(),
  max_new_tokens: z.number().int().positive(),
  limit: z.number().int().positive().nullable().optional(),
};

const evaluateJobShape = {
  ...common,
  model_path: z.string(),
  label: z.string().describe('The model\'s name in the results (wmss, base, m1).'),
  output_dir: z.string().describe('Gets <dataset>.jsonl (one line per question) and summary.json.'),
  datasets: z.array(z.object(withConfigDefaults(datasetJobShape, DATASET_MAPPING)).strict()),
  batch_size: z.number().int().positive(),
  system_prompt: z.string().nullable().optional().describe('null: the kernel\'s evaluation prompt.'),
  enable_thinking: z.boolean(),
  shard: Shard,
  static_cache: z.boolean().nullable().optional().describe('A static KV cache with compiled decoding; null: on for CUDA devices.'),
};
export const EvaluateJob = z.object(withConfigDefaults(evaluateJobShape, EVAL_MAPPING)).strict();

/** Job field → config key, so a kernel error names what the user wrote. */
export const EVAL_CONFIG_KEYS: Record<string, string> = { ...configKeys(EVAL_MAPPING), datasets: 'eval.datasets' };
/** The same for the fields of a datasets entry (`datasets[].max_new_tokens` → `eval.datasets[].maxNewTokens`). */
export const DATASET_CONFIG_KEYS: Record<string, string> = Object.fromEntries(Object.entries(configKeys(DATASET_MAPPING)).map(([f, k]) => [`datasets[].${f}`, k]));

/** The evaluate job of one model; `datasets`: eval.datasets with their paths resolved (activities/evalDatasets.ts). */
export function evaluateJob(evalConfig: RunConfig['eval'], datasets: RunConfig['eval']['datasets'], model: { path: string; label: string; outputDir: string }) {
  const job = { ...jobFields(EVAL_MAPPING, evalConfig), datasets: datasets.map((d) => jobFields(DATASET_MAPPING, d)), model_path: model.path, label: model.label, output_dir: model.outputDir };
  return job as Omit<z.input<typeof EvaluateJob>, 'log_file'>;
}

export const evaluate: StepRow = {
  id: 'evaluate', number: '7', title: 'evaluate on math benchmarks', activity: 'evaluate', queue: 'gpu', needs: ['extract', 'snapshot', 'sft', 'onnxWmss', 'onnxBase', 'onnxM1'],
  inputs: (c) => [A.extractedDir(c), ...c.eval.datasets.map((d) => d.path)], outputs: () => [`${A.RESULTS_DIR}/<model>/<dataset>.jsonl`, `${A.RESULTS_DIR}/summary.json`],
  timeouts: SCORING_TIMEOUTS, retry: GPU_RETRY, backend: (c) => c.eval.backend,
  code: {
    ts: ['pipeline/stepDefinitions/evaluate.ts', 'activities/stepActivities/evaluateActivity.ts', 'activities/evalDatasets.ts', 'activities/onnx/onnxSteps.ts'],
    kernel: ['kernels/wmss_kernels/evaluate.py', 'kernels/wmss_kernels/grading.py'],
  },
};
