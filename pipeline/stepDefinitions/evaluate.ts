/**
 * Step 7, evaluate on math benchmarks: table row, the `eval` config section (the sets, the paper
 * or lenient protocol, sampling; docs/evaluation.md), and the `evaluate` kernel's job.
 * Sandbox-safe (the workflow loads the row): nothing here reads a file; the bundled sets' counts,
 * digests and budgets are resolved by the activity (activities/evalDatasets.ts).
 */
import { z } from 'zod';
import * as A from '../artifacts';
import { countUpTo, MAX, seed } from '../configFields';
import { common, Shard } from '../jobFields';
import { configKeys, jobFields, withConfigDefaults, type JobMapping } from '../jobMapping';
import type { RunConfig } from '../config';
import type { StepRow } from '../steps';
import { GPU_RETRY, SCORING_TIMEOUTS } from './policies';

/** The bundled math sets (data/eval/), in the column order of the paper's Table 1. */
export const BENCHMARK_NAMES = ['aime2025', 'math500', 'amc23', 'aqua', 'gsm8k', 'mawps', 'svamp'] as const;
export type BenchmarkName = (typeof BENCHMARK_NAMES)[number];
export const isBundledSet = (name: string): name is BenchmarkName =>
  (BENCHMARK_NAMES as readonly string[]).includes(name);

/** The budget of a file of the user's that neither names a bundled set nor gives its own. */
export const DEFAULT_BUDGET = { maxInputTokens: 4096, maxNewTokens: 4096 } as const;

export const EvalBenchmarkConfig = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, . _ - only')
      // each set's results go to results/<model>/<name>/, beside summary.json
      .refine((n) => !['.', '..', 'summary.json'].includes(n), 'must be a plain directory name'),
    path: z.string().min(1).optional().describe('Your own file; without it, name is one of the bundled sets.'),
    format: z.enum(['json', 'jsonl', 'gsm8k']).optional(),
    expectedRows: countUpTo(MAX.rows).optional(),
    allowRowCountMismatch: z.boolean().optional(),
    maxInputTokens: countUpTo(MAX.tokens).optional(),
    maxNewTokens: countUpTo(MAX.tokens).optional(),
    limit: countUpTo(MAX.rows).optional(),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.path === undefined && !isBundledSet(b.name))
      ctx.addIssue({
        code: 'custom',
        path: ['name'],
        message: `unknown set '${b.name}': the bundled sets are ${BENCHMARK_NAMES.join(', ')}; give a path for a file of your own`,
      });
    if (
      b.path === undefined &&
      (b.format !== undefined || b.expectedRows !== undefined || b.allowRowCountMismatch !== undefined)
    )
      ctx.addIssue({
        code: 'custom',
        path: ['path'],
        message: 'format, expectedRows and allowRowCountMismatch are for a file of your own (path)',
      });
    if (b.path !== undefined && b.format === undefined && !/\.jsonl?$/i.test(b.path))
      ctx.addIssue({
        code: 'custom',
        path: ['format'],
        message: `cannot tell the format from '${b.path.split('/').pop()}': give json, jsonl or gsm8k`,
      });
    if (b.expectedRows !== undefined && b.allowRowCountMismatch)
      ctx.addIssue({
        code: 'custom',
        path: ['allowRowCountMismatch'],
        message: 'expectedRows and allowRowCountMismatch contradict each other',
      });
  });
export type EvalBenchmark = z.infer<typeof EvalBenchmarkConfig>;

export const SamplingConfig = z
  .object({
    temperature: z
      .number()
      .min(0)
      .max(10)
      .default(0)
      .describe('0 = greedy (the paper); above 0 samples n generations per prompt.'),
    topP: z.number().gt(0).max(1).default(1).describe('Nucleus sampling mass, in (0, 1].'),
    n: countUpTo(1024).default(1).describe('Generations per prompt (mean@n, pass@k for k ≤ n); 1 when greedy.'),
    seed: seed().describe('Seed of the sampling (the paper: 42).'),
  })
  .strict()
  .refine((s) => s.temperature > 0 || s.n === 1, {
    message: 'greedy decoding (temperature 0) makes n identical generations: set n to 1, or a temperature above 0',
    path: ['n'],
  });

/**
 * eval.datasets, the key before eval.benchmarks (and before the paper protocol): read as
 * benchmarks under the lenient protocol those runs were graded with, so that configs and runs in
 * flight from before keep working. `bundled:gsm8k` becomes the bundled gsm8k set.
 */
function legacyEvalDatasets(raw: unknown): unknown {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw) || !('datasets' in raw) || 'benchmarks' in raw) return raw;
  const { datasets, ...rest } = raw as Record<string, unknown>;
  const entry = (d: unknown) => {
    if (!d || typeof d !== 'object' || (d as { path?: unknown }).path !== 'bundled:gsm8k') return d;
    const { path: _p, format: _f, expectedRows: _e, name: _n, ...budget } = d as Record<string, unknown>;
    return { name: 'gsm8k', ...budget };
  };
  return { protocol: 'lenient', ...rest, benchmarks: Array.isArray(datasets) ? datasets.map(entry) : datasets };
}

/** The `eval` section without the reading of older configs (EvalConfig): what the job mapping walks. */
export const EvalFields = z
  .object({
    protocol: z
      .enum(['paper', 'lenient'])
      .default('paper')
      .describe(
        "paper = the original's evaluation: its system prompt, thinking on, per-set budgets, math-verify on the whole response (docs/evaluation.md#protocols); lenient = our think/answer prompt and a grader that also accepts a numeric match.",
      ),
    benchmarks: z
      // a plain name is short for {name}: one schema, so an error names the exact key
      .array(z.preprocess((b) => (typeof b === 'string' ? { name: b } : b), EvalBenchmarkConfig))
      .min(1)
      .superRefine((sets, ctx) => {
        sets.forEach((b, i) => {
          const first = sets.findIndex((o) => o.name === b.name);
          if (first < i)
            ctx.addIssue({
              code: 'custom',
              path: [i, 'name'],
              message: `duplicate set name '${b.name}' (also eval.benchmarks.${first}.name)`,
            });
        });
      })
      .default(BENCHMARK_NAMES.map((name) => ({ name })))
      .describe(
        `Sets to evaluate: a bundled name (${BENCHMARK_NAMES.join(', ')}), or {name, path?, format? json|jsonl|gsm8k, expectedRows?, allowRowCountMismatch?, maxInputTokens?, maxNewTokens?, limit?}. Default: all seven bundled sets with their budgets (4096 input tokens; 4096 new, 8192 for aime2025 and amc23).`,
      ),
    sampling: SamplingConfig.default(SamplingConfig.parse({})),
    batchSize: countUpTo(MAX.batch)
      .default(16)
      .describe(
        'Generations decoded together (at most 65536): the slots of continuous batching, fewer when their KV cache does not fit the GPU; prompts per batch with the batches engine.',
      ),
    systemPrompt: z
      .string()
      .optional()
      .describe("lenient only: the evaluation system prompt (default the kernel's think/answer prompt)."),
    enableThinking: z
      .boolean()
      .default(true)
      .describe("The chat template's enable_thinking (on, as the paper); off only under the lenient protocol."),
    baselines: z.boolean().default(true).describe('Also evaluate the base model and m1, for the side-by-side report.'),
    backend: z
      .enum(['torch', 'onnx'])
      .default('torch')
      .describe(
        'torch = the PyTorch kernel (continuous batching) on a GPU worker; onnx = greedy decoding with onnxruntime-node on an onnx worker (lenient protocol only; docs/onnx.md).',
      ),
    overwrite: z
      .boolean()
      .default(false)
      .describe(
        'When step 7 re-runs over results of an earlier run, replace them; by default they are kept as results.previous-<time>/.',
      ),
  })
  .strict()
  .superRefine((e, ctx) => {
    if (e.protocol === 'paper') {
      if (e.systemPrompt !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['systemPrompt'],
          message: "the paper protocol uses the original's system prompt; set eval.protocol to lenient to use your own",
        });
      if (e.enableThinking === false)
        ctx.addIssue({
          code: 'custom',
          path: ['enableThinking'],
          message: 'the paper protocol evaluates with thinking on; set eval.protocol to lenient to turn it off',
        });
    }
    if (e.backend === 'onnx' && e.protocol === 'paper')
      ctx.addIssue({
        code: 'custom',
        path: ['protocol'],
        message:
          'the onnx backend cannot run the paper protocol (its grader, math-verify, needs Python): use eval.backend torch for protocol paper, or eval.protocol lenient with onnx',
      });
    if (e.backend === 'onnx' && (e.sampling.temperature > 0 || e.sampling.n > 1))
      ctx.addIssue({
        code: 'custom',
        path: ['sampling'],
        message: 'the onnx backend decodes greedily only: use eval.backend torch to sample',
      });
  });

export const EvalConfig = z.preprocess(legacyEvalDatasets, EvalFields);

/** eval with `fn` applied to the path of every file of the user's (bundled sets have none). */
export function withBenchmarkPaths<E extends Pick<z.infer<typeof EvalFields>, 'benchmarks'>>(
  evalConfig: E,
  fn: (p: string) => string,
): E {
  return {
    ...evalConfig,
    benchmarks: evalConfig.benchmarks.map((b) => (b.path === undefined ? b : { ...b, path: fn(b.path) })),
  };
}

/**
 * Config keys the kernel does not take: the sets map one by one (BENCHMARK_MAPPING) after the
 * activity resolved them; backend and baselines decide where and on which models the step runs;
 * overwrite decides what the activity does with an earlier run's published results (the kernel
 * always writes into a fresh staging directory).
 */
export const EVAL_MAPPING: JobMapping = {
  section: 'eval',
  schema: EvalFields,
  skip: ['benchmarks', 'baselines', 'backend', 'overwrite'],
  rename: { 'sampling.n': 'n_samples' },
};
/** One resolved eval.benchmarks entry → one entry of the job's datasets; the row-count override becomes expected_rows null. */
export const BENCHMARK_MAPPING: JobMapping = {
  section: 'eval.benchmarks[]',
  schema: EvalBenchmarkConfig,
  skip: ['allowRowCountMismatch'],
};

/** One set as the activity resolved it (activities/evalDatasets.ts) for the kernel and the onnx backend. */
export interface EvalSet {
  name: string;
  /** Absolute path of the file (a bundled set's in data/eval/). */
  path: string;
  format: 'json' | 'jsonl' | 'gsm8k';
  expectedRows: number | null;
  maxInputTokens: number;
  maxNewTokens: number;
  limit: number | null;
  /** A bundled set's digest: other content is refused. */
  sha256: string | null;
}

const datasetJobShape = {
  name: z.string().describe('The results folder of the set: <output_dir>/<name>/.'),
  path: z.string(),
  format: z.enum(['json', 'jsonl', 'gsm8k']),
  expected_rows: z.number().int().positive().nullable().optional().describe('null: any number of rows.'),
  max_input_tokens: z
    .number()
    .int()
    .positive()
    .default(DEFAULT_BUDGET.maxInputTokens)
    .describe('A longer prompt is refused, not truncated.'),
  max_new_tokens: z.number().int().positive().default(DEFAULT_BUDGET.maxNewTokens),
  limit: z.number().int().positive().nullable().optional().describe('Only the first N rows; null: all.'),
  sha256: z
    .string()
    .nullable()
    .optional()
    .describe("A bundled set's digest: a file with other content is refused. null: not checked."),
};

const evaluateJobShape = {
  ...common,
  model_path: z.string(),
  label: z.string().describe("The model's name in the results (wmss, base, m1)."),
  output_dir: z.string().describe('Gets <set>/eval_detail.csv and <set>/eval_summary.json per set, and summary.json.'),
  datasets: z
    .array(z.object(withConfigDefaults(datasetJobShape, BENCHMARK_MAPPING)).strict())
    .describe('At least one set (the kernel refuses an empty list).'),
  protocol: z.enum(['paper', 'lenient']),
  batch_size: z.number().int().positive(),
  system_prompt: z
    .string()
    .nullable()
    .optional()
    .describe(
      "null: the protocol's (paper: the original's, data/eval/paper-protocol.json; lenient: the kernel's think/answer prompt).",
    ),
  enable_thinking: z.boolean(),
  temperature: z.number().min(0),
  top_p: z.number().gt(0).max(1),
  n_samples: z.number().int().positive().describe('Generations per prompt; 1 when temperature is 0.'),
  shard: Shard,
  engine: z
    .enum(['continuous', 'batches'])
    .default('continuous')
    .describe(
      "continuous: decode_engine.py, batch_size slots, a finished row's slot refilled at once; batches: fixed batches through transformers generate (docs/evaluation.md#generation).",
    ),
  static_cache: z
    .boolean()
    .nullable()
    .optional()
    .describe('engine batches only: a static KV cache with compiled decoding; null: on for CUDA devices.'),
  overwrite: z
    .boolean()
    .default(false)
    .describe('Replace the per-set results already in output_dir (refused otherwise).'),
  merge_shards: z
    .array(z.string())
    .nullable()
    .optional()
    .describe(
      'Shard output dirs whose per-set files are merged into output_dir, as one run would have written them; no model is loaded.',
    ),
};
export const EvaluateJob = z.object(withConfigDefaults(evaluateJobShape, EVAL_MAPPING)).strict();

/** Job field → config key, so a kernel error names what the user wrote. */
export const EVAL_CONFIG_KEYS: Record<string, string> = { ...configKeys(EVAL_MAPPING), datasets: 'eval.benchmarks' };
/** The same for the fields of a datasets entry (`datasets[].max_new_tokens` → `eval.benchmarks[].maxNewTokens`). */
export const DATASET_CONFIG_KEYS: Record<string, string> = Object.fromEntries(
  Object.entries(configKeys(BENCHMARK_MAPPING)).map(([f, k]) => [`datasets[].${f}`, k]),
);

/** The evaluate job of one model; `sets`: eval.benchmarks as the activity resolved them. */
export function evaluateJob(
  evalConfig: RunConfig['eval'],
  sets: EvalSet[],
  model: { path: string; label: string; outputDir: string },
) {
  const datasets = sets.map((s) => ({ ...jobFields(BENCHMARK_MAPPING, s), sha256: s.sha256 }));
  const job = {
    ...jobFields(EVAL_MAPPING, evalConfig),
    datasets,
    model_path: model.path,
    label: model.label,
    output_dir: model.outputDir,
  };
  return job as Omit<z.input<typeof EvaluateJob>, 'log_file'>;
}

export const evaluate: StepRow = {
  id: 'evaluate',
  number: '7',
  title: 'evaluate on math benchmarks',
  activity: 'evaluate',
  queue: 'gpu',
  needs: ['extract', 'snapshot', 'sft', 'continuedSft', 'onnxWmss', 'onnxBase', 'onnxM1'],
  inputs: (c) => [A.extractedDir(c), ...c.eval.benchmarks.map((b) => b.path ?? `data/eval/${b.name} (bundled)`)],
  outputs: () => [
    `${A.RESULTS_DIR}/<model>/<set>/eval_detail.csv`,
    `${A.RESULTS_DIR}/<model>/<set>/eval_summary.json`,
    `${A.RESULTS_DIR}/<model>/summary.json`,
  ],
  timeouts: SCORING_TIMEOUTS,
  retry: GPU_RETRY,
  backend: (c) => c.eval.backend,
  code: {
    ts: [
      'pipeline/stepDefinitions/evaluate.ts',
      'activities/stepActivities/evaluateActivity.ts',
      'activities/evalDatasets.ts',
      'activities/onnx/onnxSteps.ts',
    ],
    kernel: [
      'kernels/wmss_kernels/evaluate.py',
      'kernels/wmss_kernels/eval_generate.py',
      'kernels/wmss_kernels/decode_engine.py',
      'kernels/wmss_kernels/eval_data.py',
      'kernels/wmss_kernels/eval_results.py',
      'kernels/wmss_kernels/grading.py',
    ],
  },
};
