/**
 * The one definition of a run's parameters: the steps' config sections (pipeline/stepDefinitions/<step>.ts)
 * and the run-wide ones below. Every field carries its documentation (`.describe`), from which
 * `wmss config-reference` and docs/configuration.md's reference are generated.
 * Defaults follow the original `run_ensemble.sh` (docs/method.md#the-original-run-and-its-defaults) unless a field says otherwise.
 */
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { countUpTo, DataFormatConfig, MAX, relOrAbsPath } from './configFields';
import { ErrorTypes } from './errors';
import { checkGroups, groupFields } from './groups';
import { NotifyConfig } from './notify';
import { applyPreset, PresetName } from './presets';
import { EntropyConfig } from './stepDefinitions/entropy';
import { EvalConfig } from './stepDefinitions/evaluate';
import { ExtractConfig } from './stepDefinitions/extract';
import { JointConfig } from './stepDefinitions/joint';
import { BaselineConfig } from './stepDefinitions/continuedSft';
import { ResampleConfig, WeightingConfig } from './stepDefinitions/merge';
import { SftConfig } from './stepDefinitions/sft';
import { modelRef } from './modelRef';
import { TrackingConfig } from './trackingConfig';

export const PlacementConfig = z
  .object({
    storage: z
      .enum(['shared', 'local'])
      .default('shared')
      .describe(
        'shared: any worker reaches every artifact (NFS, Lustre); local: steps run on the host that holds their inputs.',
      ),
    gpuQueue: z.string().default('wmss-gpu').describe('Task queue of the GPU workers.'),
    controlQueue: z
      .string()
      .default('wmss')
      .describe('Task queue of the control worker (workflow tasks and CPU steps).'),
    onnxQueue: z
      .string()
      .default('wmss-onnx')
      .describe('Task queue of the onnx workers (steps 0, 2, 7 when their backend is onnx).'),
    gpuPool: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, . _ - only')
      .optional()
      .describe(
        'GPU kind for the GPU steps, e.g. h100: they go to <gpuQueue>:<pool>, served by GPU workers started with --pool <pool>.',
      ),
    host: z
      .string()
      .regex(/^[^@\s]+$/, 'a host name (no @ or spaces)')
      .optional()
      .describe(
        'local storage: the host that runs the first steps (0, 1, 4) and therefore the whole run. Default: the host of the first GPU worker that answers.',
      ),
    hostTimeout: z
      .string()
      .regex(/^\d+(s|m|h)$/, 'a duration like 90s, 10m or 2h')
      .default('10m')
      .describe(
        'local storage: how long a step waits for a worker on the host that holds its inputs before failing with HostUnavailable.',
      ),
    ...groupFields,
  })
  .strict()
  .superRefine(checkGroups);

export const TimeoutsConfig = z
  .object({
    heartbeatSeconds: z
      .number()
      .int()
      .min(15)
      .max(86_400)
      .optional()
      .describe(
        "Override the step table's heartbeat timeout (60 s): how long after a worker dies its step is retried elsewhere. At least 15 s (workers heartbeat every 5 s), at most a day.",
      ),
    stallSeconds: countUpTo(7 * 86_400)
      .optional()
      .describe(
        "Override the step table's stall limits (10–30 min): a kernel alive but printing no progress this long is killed and retried. Counted from the kernel's first line: start-up (imports, model loading) has at least 10 min. At most a week.",
      ),
  })
  .strict();

export const DiskConfig = z
  .object({
    check: z
      .boolean()
      .default(true)
      .describe(
        "Before a step that writes a model (4, 1, 5a, 5b, 6), compare the run dir's free space with the step's estimate (model size × copies) and fail at once with InsufficientDisk when it does not fit.",
      ),
    headroomGB: z
      .number()
      .min(0)
      .max(MAX.weight)
      .default(1)
      .describe(
        'Free space (GB, 10^9 bytes) that must remain after the estimate, for logs, manifests and other users of the file system.',
      ),
  })
  .strict();

export const RunConfig = z
  .object({
    runName: z
      .string()
      .regex(
        /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
        'runName: 1–64 of letters, digits, . _ - (starting with a letter or digit)',
      )
      .describe('Name of the run; part of the workflow id and a search attribute.'),
    runDir: relOrAbsPath().describe(
      "Directory of all artifacts (the original's $outdir). `wmss start` makes it absolute.",
    ),
    baseModel: modelRef().describe(
      "The base model: a local Hugging Face model directory, or a Hugging Face id org/name or org/name@revision resolved through the workers' Hugging Face cache (docs/models.md).",
    ),
    dataFile: relOrAbsPath().describe(
      'Training data JSONL: {"idx", "messages"} records (docs/method.md#training-records), or GSM8K-style {"question","answer"} with dataFormat gsm8k.',
    ),
    dataFormat: DataFormatConfig,
    preset: PresetName.optional().describe(
      'original = the published code (repo formula and entropy positions, duplicates kept, strong branch extracted in bf16); paper = the paper (its formula with dedupe on, shifted entropy). Fills only fields the config leaves out: docs/method.md#presets.',
    ),
    device: z
      .enum(['auto', 'cpu', 'cuda'])
      .default('auto')
      .describe('Where kernels run; auto = CUDA when the worker has a GPU.'),
    entropy: EntropyConfig.default(EntropyConfig.parse({})),
    sft: SftConfig.default(SftConfig.parse({})),
    weighting: WeightingConfig.default(WeightingConfig.parse({})),
    resample: ResampleConfig.default(ResampleConfig.parse({})),
    joint: JointConfig.default(JointConfig.parse({})),
    baseline: BaselineConfig.default(BaselineConfig.parse({})),
    extract: ExtractConfig.default(ExtractConfig.parse({})),
    eval: EvalConfig.default(EvalConfig.parse({})),
    placement: PlacementConfig.default(PlacementConfig.parse({})),
    timeouts: TimeoutsConfig.default({}),
    disk: DiskConfig.default(DiskConfig.parse({})),
    // no default: a run without it raises no alerts (and replays like one recorded before alerts)
    notify: NotifyConfig.optional().describe(
      'Webhook alerts on failure, stall or completion (docs/operating.md#alerts).',
    ),
    tracking: TrackingConfig.default(TrackingConfig.parse({})),
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

/** The config with its preset applied (pipeline/presets.ts) and defaults filled in; throws on a bad one. */
export function parseRunConfig(input: unknown): RunConfig {
  return RunConfig.parse(applyPreset(input));
}

/**
 * The run config of a workflow input, or a non-retryable InvalidConfig failure whose message has
 * one line per problem, each naming its key (`joint.fusionLambda: Too big: …`).
 */
export function checkRunConfig(input: unknown): RunConfig {
  const parsed = RunConfig.safeParse(applyPreset(input));
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => ({
    field: issue.path.length ? issue.path.join('.') : null,
    message: issue.message,
  }));
  throw ApplicationFailure.create({
    type: ErrorTypes.InvalidConfig,
    nonRetryable: true,
    message: `invalid run config:\n${formatConfigIssues(parsed.error)}`,
    details: [{ file: null, line: null, field: issues[0]?.field ?? null, issues }],
  });
}
