/**
 * The one definition of a run's parameters. Every field carries its documentation
 * (`.describe`), from which `wmss config-reference` and the README's reference are generated.
 * Defaults follow the original `run_ensemble.sh` (WMSS-SPEC §2) unless a field says otherwise.
 */
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { ErrorTypes } from './errors';

const positiveInt = () => z.number().int().positive();
/**
 * Upper bounds: far above any paper-scale run (Qwen3-8B, 32k context, a few epochs), low enough
 * that a typo (an extra zero, 1e30) is refused before a worker allocates or loops for it.
 */
const MAX = {
  epochs: 1000,
  steps: 100_000_000,
  tokens: 1_048_576,
  batch: 65_536,
  gradAccum: 1_000_000,
  rows: 1_000_000_000,
  seed: 4_294_967_295,
  weight: 1_000_000,
  multiplier: 100,
} as const;
const countUpTo = (max: number) => positiveInt().max(max);
const unitFraction = () => z.number().min(0).max(1);
const relOrAbsPath = () => z.string().min(1).refine((p) => !p.includes('\0'), 'path contains a NUL byte');

/** Hyper-parameters shared by Stage-1 SFT (step 1) and joint training (step 5b). */
const trainingFields = {
  lr: z.number().positive().max(1).default(1e-5).describe('Peak learning rate of AdamW (original: 1e-5).'),
  warmupRatio: unitFraction().default(0).describe('Fraction of optimizer steps spent in linear warm-up (original: 0; paper v2: 0.1).'),
  weightDecay: z.number().min(0).max(10).default(0).describe('AdamW weight decay (at most 10).'),
  maxGradNorm: z.number().positive().max(MAX.weight).default(1.0).describe('Gradient clipping norm (at most 10^6).'),
  epochs: z.number().positive().max(MAX.epochs).default(1).describe('Epochs over the training set (original: 1; at most 1000).'),
  microBatch: countUpTo(MAX.batch).default(1).describe('Sequences per device per forward pass (at most 65536).'),
  gradAccum: countUpTo(MAX.gradAccum).default(256).describe('Micro-batches per optimizer step, all devices together: global batch = microBatch × gradAccum whatever the number of GPUs (each of N runs gradAccum / N; must divide). Original: 1 × 32 per GPU × 8 GPUs = 256. At most 10^6.'),
  maxLength: countUpTo(MAX.tokens).default(4096).describe('Truncation length in tokens (original: 4096; at most 2^20).'),
  maxSteps: countUpTo(MAX.steps).optional().describe('Optimizer steps; default floor(N × epochs / global batch), as the original. At most 10^8.'),
  saveEvery: z.number().int().min(0).max(MAX.steps).default(50).describe('Optimizer steps between resumable checkpoints (0 = only at the end). A crash loses at most this much work.'),
  keepCheckpoints: countUpTo(MAX.steps).optional().describe('Keep only the newest N complete checkpoints (older ones are deleted as new ones complete; the newest complete one, which resume and the later steps read, is never deleted). Default: keep all. Not part of the cache key.'),
  gradientCheckpointing: z.boolean().default(true).describe('Recompute activations in backward to save memory (original: on).'),
  compileLayers: z.boolean().optional().describe('torch.compile each transformer block (default: on for CUDA, off on the CPU). About 2× tokens/s on a 0.6B model; costs 10–30 s of compiling when a kernel starts (docs/performance.md).'),
  dtype: z.enum(['auto', 'float32', 'bfloat16']).default('auto').describe('auto = bf16 on CUDA, fp32 on CPU.'),
  seed: z.number().int().min(0).max(MAX.seed).default(42).describe('Seed of data order and initialisation (0 to 2^32−1).'),
  parallelism: z
    .object({
      strategy: z.enum(['auto', 'ddp', 'fsdp']).default('auto').describe('Several GPUs: ddp replicates the model, its gradients and AdamW state on every GPU; fsdp shards them (FSDP2, one group per decoder layer; checkpoints sharded with torch.distributed.checkpoint, the final one a plain HF model); auto = fsdp when the estimated DDP footprint (pipeline/parallelism.ts) exceeds 85 % of the GPU, else ddp. One GPU or CPU: ignored, except that fsdp is refused.'),
      reshardAfterForward: z.boolean().default(true).describe('fsdp: free each layer\'s gathered weights after its forward and gather them again in backward (less memory, one more all-gather per layer).'),
      cpuOffload: z.boolean().default(false).describe('fsdp: keep the sharded weights, gradients and AdamW state in host memory and step the optimizer on the CPU (much slower; for models whose shards do not fit the GPUs).'),
    })
    .strict()
    .refine((p) => !p.cpuOffload || p.strategy !== 'ddp', { message: 'cpuOffload needs strategy fsdp or auto (DDP keeps everything on the GPU)', path: ['cpuOffload'] })
    .default({ strategy: 'auto', reshardAfterForward: true, cpuOffload: false }),
};

export const SftConfig = z
  .object({
    ...trainingFields,
    systemPrompt: z.string().optional().describe('System prompt of the Stage-1 prompt; default the original\'s think/answer prompt (data/eval/paper-protocol.json, sftSystemPrompt).'),
  })
  .strict();

export const JointConfig = z
  .object({
    ...trainingFields,
    fusionLambda: unitFraction().default(0.5).describe('λ in z_mix = (1−λ)·z_weak + λ·z_strong (original: 0.5; the paper\'s sweep plateaus at 0.42–0.50).'),
    freezeWeak: z.boolean().default(false).describe('Freeze the weak branch (sub_models.0). The original trains both (freeze=false).'),
    lossOn: z.enum(['all', 'completion']).default('all').describe('Tokens that carry the joint loss: all (as the original, prompt included) or completion only (as the paper implies).'),
  })
  .strict();

export const EntropyConfig = z
  .object({
    definition: z.enum(['shifted', 'repo']).default('shifted').describe('shifted = paper Eq. 7 (distributions predicting each answer token); repo = the original\'s unshifted positions (WMSS-SPEC §5).'),
    maxLength: countUpTo(MAX.tokens).default(8192).describe('Truncation length for entropy scoring (original: 8192; at most 2^20).'),
    batchTokens: countUpTo(16 * MAX.tokens).default(16384).describe('Padded tokens per batch (length-bucketed; at most 2^24).'),
    vocabChunk: countUpTo(MAX.tokens).default(1024).describe('Positions per chunk of the fp32 entropy computation; bounds memory for large vocabularies (at most 2^20).'),
    backend: z.enum(['torch', 'onnx']).default('torch').describe('torch = the PyTorch kernel on a GPU worker; onnx = onnxruntime-node on an onnx worker (CPU, no Python), after an export step (docs/onnx.md).'),
  })
  .strict();

export const WeightingConfig = z
  .object({
    formula: z.enum(['repo', 'paper']).default('repo').describe('repo = per-term normalised mixture α·H0/ΣH0 + β·[−ΔH]+/Σ + γ·[ΔH]+/Σ (what the code ran); paper = p ∝ α·[−ΔH]+ + β·H1 + γ·[ΔH]+ (v2 Eq. 9). WMSS-SPEC §8.'),
    alpha: z.number().min(0).max(MAX.weight).default(0.1).describe('repo: weight of base entropy; paper: weight of consolidation [−ΔH]+.'),
    beta: z.number().min(0).max(MAX.weight).default(0.8).describe('repo: weight of consolidation [−ΔH]+; paper: weight of the strong model\'s entropy.'),
    gamma: z.number().min(0).max(MAX.weight).default(0.1).describe('Weight of regression repair [ΔH]+ (both formulas). Each weight at most 10^6.'),
  })
  .strict()
  .refine((w) => w.alpha + w.beta + w.gamma > 0, 'alpha + beta + gamma must be > 0');

export const ResampleConfig = z
  .object({
    multiplier: z.number().positive().max(MAX.multiplier).default(1.0).describe('Draws = floor(N × multiplier) (original: 1.0; at most 100, as every draw is held in memory).'),
    dedupe: z.boolean().default(false).describe('Remove duplicate draws (paper v2 WD-DS); the original keeps them.'),
    seed: z.number().int().min(0).max(MAX.seed).default(42).describe('Seed of the weighted draw (xoshiro128** stream; not NumPy\'s, so indices differ from the original for the same seed).'),
  })
  .strict();

export const ExtractConfig = z
  .object({
    submodelIdx: z.number().int().min(0).max(1).default(1).describe('Sub-model to extract: 1 = strong branch (repo HEAD and paper v2), 0 = weak branch (the repo\'s first commit). WMSS-SPEC §11.'),
    dtype: z.enum(['keep', 'bfloat16', 'float32']).default('keep').describe('dtype of the extracted weights (keep = as trained).'),
  })
  .strict();

/** The bundled math sets (data/eval/), in the column order of the paper's Table 1. */
export const BENCHMARK_NAMES = ['aime2025', 'math500', 'amc23', 'aqua', 'gsm8k', 'mawps', 'svamp'] as const;
export type BenchmarkName = (typeof BENCHMARK_NAMES)[number];
const isBundled = (name: string): name is BenchmarkName => (BENCHMARK_NAMES as readonly string[]).includes(name);

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
    if (b.path === undefined && !isBundled(b.name)) ctx.addIssue({ code: 'custom', path: ['name'], message: `unknown set '${b.name}': the bundled sets are ${BENCHMARK_NAMES.join(', ')}; give a path for a file of your own` });
    if (b.path === undefined && (b.format !== undefined || b.expectedRows !== undefined || b.allowRowCountMismatch !== undefined)) ctx.addIssue({ code: 'custom', path: ['path'], message: 'format, expectedRows and allowRowCountMismatch are for a file of your own (path)' });
    if (b.path !== undefined && b.format === undefined && !/\.jsonl?$/i.test(b.path)) ctx.addIssue({ code: 'custom', path: ['format'], message: `cannot tell the format from '${b.path.split('/').pop()}': give json, jsonl or gsm8k` });
    if (b.expectedRows !== undefined && b.allowRowCountMismatch) ctx.addIssue({ code: 'custom', path: ['allowRowCountMismatch'], message: 'expectedRows and allowRowCountMismatch contradict each other' });
  });

export type EvalBenchmark = z.infer<typeof EvalBenchmarkConfig>;

export const SamplingConfig = z
  .object({
    temperature: z.number().min(0).max(10).default(0).describe('0 = greedy (the paper); above 0 samples n generations per prompt.'),
    topP: z.number().gt(0).max(1).default(1).describe('Nucleus sampling mass, in (0, 1].'),
    n: countUpTo(1024).default(1).describe('Generations per prompt (mean@n, pass@k for k ≤ n); 1 when greedy.'),
    seed: z.number().int().min(0).max(MAX.seed).default(42).describe('Seed of the sampling (the paper: 42).'),
  })
  .strict()
  .refine((s) => s.temperature > 0 || s.n === 1, { message: 'greedy decoding (temperature 0) makes n identical generations: set n to 1, or a temperature above 0', path: ['n'] });

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

const EvalFields = z
  .object({
    protocol: z.enum(['paper', 'lenient']).default('paper').describe('paper = the original\'s evaluation: its system prompt, thinking on, per-set budgets, math-verify on the whole response (docs/evaluation.md); lenient = our think/answer prompt and a grader that also accepts a numeric match.'),
    benchmarks: z
      // a plain name is short for {name}: one schema, so an error names the exact key
      .array(z.preprocess((b) => (typeof b === 'string' ? { name: b } : b), EvalBenchmarkConfig))
      .min(1)
      .superRefine((sets, ctx) => {
        sets.forEach((b, i) => {
          const first = sets.findIndex((o) => o.name === b.name);
          if (first < i) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate set name '${b.name}' (also eval.benchmarks.${first}.name)` });
        });
      })
      .default(BENCHMARK_NAMES.map((name) => ({ name })))
      .describe(`Sets to evaluate: a bundled name (${BENCHMARK_NAMES.join(', ')}), or {name, path?, format? json|jsonl|gsm8k, expectedRows?, allowRowCountMismatch?, maxInputTokens?, maxNewTokens?, limit?}. Default: all seven bundled sets with their budgets (4096 input tokens; 4096 new, 8192 for aime2025 and amc23).`),
    sampling: SamplingConfig.default(SamplingConfig.parse({})),
    batchSize: countUpTo(MAX.batch).default(16).describe('Prompts per generation batch (at most 65536).'),
    systemPrompt: z.string().optional().describe('lenient only: the evaluation system prompt (default the kernel\'s think/answer prompt).'),
    enableThinking: z.boolean().optional().describe('lenient only: the chat template\'s enable_thinking (default on, as the paper).'),
    baselines: z.boolean().default(true).describe('Also evaluate the base model and m1, for the side-by-side report.'),
    backend: z.enum(['torch', 'onnx']).default('torch').describe('torch = transformers generate on a GPU worker; onnx = greedy decoding with onnxruntime-node on an onnx worker (lenient protocol only; docs/onnx.md).'),
    overwrite: z.boolean().default(false).describe('When step 7 re-runs over results of an earlier run, replace them; by default they are kept as results.previous-<time>/.'),
  })
  .strict()
  .superRefine((e, ctx) => {
    if (e.protocol === 'paper') {
      if (e.systemPrompt !== undefined) ctx.addIssue({ code: 'custom', path: ['systemPrompt'], message: 'the paper protocol uses the original\'s system prompt; set eval.protocol to lenient to use your own' });
      if (e.enableThinking === false) ctx.addIssue({ code: 'custom', path: ['enableThinking'], message: 'the paper protocol evaluates with thinking on; set eval.protocol to lenient to turn it off' });
    }
    if (e.backend === 'onnx' && e.protocol === 'paper') ctx.addIssue({ code: 'custom', path: ['protocol'], message: 'the onnx backend cannot run the paper protocol (its grader, math-verify, needs Python): use eval.backend torch for protocol paper, or eval.protocol lenient with onnx' });
    if (e.backend === 'onnx' && (e.sampling.temperature > 0 || e.sampling.n > 1)) ctx.addIssue({ code: 'custom', path: ['sampling'], message: 'the onnx backend decodes greedily only: use eval.backend torch to sample' });
  });

export const EvalConfig = z.preprocess(legacyEvalDatasets, EvalFields);

/** eval with `fn` applied to the path of every file of the user's (bundled sets have none). */
export function withBenchmarkPaths<E extends Pick<z.infer<typeof EvalConfig>, 'benchmarks'>>(evalConfig: E, fn: (p: string) => string): E {
  return { ...evalConfig, benchmarks: evalConfig.benchmarks.map((b) => (b.path === undefined ? b : { ...b, path: fn(b.path) })) };
}

export const PlacementConfig = z
  .object({
    storage: z.enum(['shared', 'local']).default('shared').describe('shared: any worker reaches every artifact (NFS, Lustre); local: steps run on the host that holds their inputs.'),
    gpuQueue: z.string().default('wmss-gpu').describe('Task queue of the GPU workers.'),
    controlQueue: z.string().default('wmss').describe('Task queue of the control worker (workflow tasks and CPU steps).'),
    onnxQueue: z.string().default('wmss-onnx').describe('Task queue of the onnx workers (steps 0, 2, 7 when their backend is onnx).'),
    gpuPool: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, . _ - only').optional().describe('GPU kind for the GPU steps, e.g. h100: they go to <gpuQueue>:<pool>, served by GPU workers started with --pool <pool>.'),
    host: z.string().regex(/^[^@\s]+$/, 'a host name (no @ or spaces)').optional().describe('local storage: the host that runs the first steps (0, 1, 4) and therefore the whole run. Default: the host of the first GPU worker that answers.'),
    hostTimeout: z.string().regex(/^\d+(s|m|h)$/, 'a duration like 90s, 10m or 2h').default('10m').describe('local storage: how long a step waits for a worker on the host that holds its inputs before failing with HostUnavailable.'),
  })
  .strict();

export const TimeoutsConfig = z
  .object({
    heartbeatSeconds: z.number().int().min(15).max(86_400).optional().describe('Override the step table\'s heartbeat timeout (60 s): how long after a worker dies its step is retried elsewhere. At least 15 s (workers heartbeat every 5 s), at most a day.'),
    stallSeconds: countUpTo(7 * 86_400).optional().describe('Override the step table\'s stall limits (10–30 min): a kernel alive but printing no progress this long is killed and retried. Counted from the kernel\'s first line: start-up (imports, model loading) has at least 10 min. At most a week.'),
  })
  .strict();

export const DiskConfig = z
  .object({
    check: z.boolean().default(true).describe('Before a step that writes a model (4, 1, 5a, 5b, 6), compare the run dir\'s free space with the step\'s estimate (model size × copies) and fail at once with InsufficientDisk when it does not fit.'),
    headroomGB: z.number().min(0).max(MAX.weight).default(1).describe('Free space (GB, 10^9 bytes) that must remain after the estimate, for logs, manifests and other users of the file system.'),
  })
  .strict();

export const RunConfig = z
  .object({
    runName: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'runName: 1–64 of letters, digits, . _ - (starting with a letter or digit)').describe('Name of the run; part of the workflow id and a search attribute.'),
    runDir: relOrAbsPath().describe('Directory of all artifacts (the original\'s $outdir). `wmss start` makes it absolute.'),
    baseModel: relOrAbsPath().describe('Local Hugging Face model directory of the base model (nothing is downloaded).'),
    dataFile: relOrAbsPath().describe('Training data JSONL: {"idx", "messages"} records (WMSS-SPEC §3.2), or GSM8K-style {"question","answer"} with dataFormat gsm8k.'),
    dataFormat: z.enum(['messages', 'gsm8k']).default('messages').describe('messages = the original\'s records (first user and assistant turn used); gsm8k = {"question","answer"} lines, answer after ####.'),
    device: z.enum(['auto', 'cpu', 'cuda']).default('auto').describe('Where kernels run; auto = CUDA when the worker has a GPU.'),
    entropy: EntropyConfig.default(EntropyConfig.parse({})),
    sft: SftConfig.default(SftConfig.parse({})),
    weighting: WeightingConfig.default(WeightingConfig.parse({})),
    resample: ResampleConfig.default(ResampleConfig.parse({})),
    joint: JointConfig.default(JointConfig.parse({})),
    extract: ExtractConfig.default(ExtractConfig.parse({})),
    eval: EvalConfig.default(EvalConfig.parse({})),
    placement: PlacementConfig.default(PlacementConfig.parse({})),
    timeouts: TimeoutsConfig.default({}),
    disk: DiskConfig.default(DiskConfig.parse({})),
  })
  .strict();

/** What a user writes (defaults optional). */
export type RunConfigInput = z.input<typeof RunConfig>;
/** What the workflow and activities see (defaults filled in). */
export type RunConfig = z.infer<typeof RunConfig>;


/** Formats zod issues as one line each: `joint.fusionLambda: Too big: expected number to be <=1`. */
export function formatConfigIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('\n');
}

export function parseRunConfig(input: unknown): RunConfig {
  return RunConfig.parse(input);
}

/**
 * The run config of a workflow input, or a non-retryable InvalidConfig failure whose message has
 * one line per problem, each naming its key (`joint.fusionLambda: Too big: …`).
 */
export function checkRunConfig(input: unknown): RunConfig {
  const parsed = RunConfig.safeParse(input);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => ({ field: issue.path.length ? issue.path.join('.') : null, message: issue.message }));
  throw ApplicationFailure.create({
    type: ErrorTypes.InvalidConfig,
    nonRetryable: true,
    message: `invalid run config:\n${formatConfigIssues(parsed.error)}`,
    details: [{ file: null, line: null, field: issues[0]?.field ?? null, issues }],
  });
}
