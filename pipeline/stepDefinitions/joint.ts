/**
 * Step 5b, joint training of the fused model: table row, the `joint` config section, and the
 * `joint` kernel's job. Sandbox-safe (the workflow loads the row); the activity is ./activity.ts.
 *
 * λ travels one way: joint.fusionLambda goes into the fused checkpoint's config.json at step 5a
 * (../fuse), and the joint kernel takes it from there; the job does not carry it.
 */
import { z } from 'zod';
import * as A from '../artifacts';
import { unitFraction } from '../configFields';
import { RUN_MAPPING } from '../jobFields';
import { configKeys, jobFields, withConfigDefaults, type JobMapping } from '../jobMapping';
import type { RunConfig } from '../config';
import type { StepRow } from '../steps';
import { GPU_RETRY, TRAINING_TIMEOUTS } from './policies';
import { trainingFields, trainingJobShape, TRAINING_RENAME, TRAINING_SKIP } from './training';
import { DEFAULT_SFT_SYSTEM_PROMPT } from './sft';

/** λ in z_mix = (1−λ)·z_weak + λ·z_strong: its one range, for the config and for the kernel (job_schema.json). */
export const FusionLambda = unitFraction();

export const JointConfig = z
  .object({
    ...trainingFields,
    fusionLambda: FusionLambda.default(0.5).describe(
      "λ in z_mix = (1−λ)·z_weak + λ·z_strong (original: 0.5; the paper's sweep plateaus at 0.42–0.50).",
    ),
    freezeWeak: z
      .boolean()
      .default(false)
      .describe('Freeze the weak branch (sub_models.0). The original trains both (freeze=false).'),
    lossOn: z
      .enum(['all', 'completion'])
      .default('all')
      .describe(
        'Tokens that carry the joint loss: all (as the original, prompt included) or completion only (as the paper implies).',
      ),
    promptFormat: z
      .enum(['conversation', 'stage1'])
      .default('conversation')
      .describe(
        "How steps 5b and 5c render a record: conversation = the original's [user, assistant] conversation through the chat template, no system prompt; stage1 = Stage-1 SFT's format, [system (sft.systemPrompt), user] then the answer and eos, the prompt step 7 evaluates (docs/method.md#prompt-formats).",
      ),
  })
  .strict();

export const JOINT_MAPPING: JobMapping = {
  section: 'joint',
  schema: JointConfig,
  // fusionLambda reaches the kernel in the fused checkpoint (step 5a), not in the job; promptFormat
  // as the system prompt it selects (system_prompt)
  skip: [...TRAINING_SKIP, 'fusionLambda', 'promptFormat'],
  rename: TRAINING_RENAME,
};

const jointJobShape = {
  ...trainingJobShape,
  fused_dir: z
    .string()
    .nullable()
    .optional()
    .describe('The fused checkpoint of step 5a (its config.json holds λ); or else weak_path + strong_path.'),
  weak_path: z
    .string()
    .nullable()
    .optional()
    .describe('Without fused_dir: the weak model directory; the kernel fuses the two itself (benches).'),
  strong_path: z.string().nullable().optional().describe('Without fused_dir: the strong model directory.'),
  model_path: z
    .string()
    .nullable()
    .optional()
    .describe(
      'Step 5c, instead of fused_dir: a plain model (m1) trained exactly as the fused one would be, with the plain causal-LM loss.',
    ),
  fusion_lambda: FusionLambda.nullable()
    .optional()
    .describe(
      "λ of the fusion the kernel builds from weak_path + strong_path, and only then (required there); with fused_dir, λ is the fused config.json's.",
    ),
  indices_file: z
    .string()
    .describe('The resampled training set of step 3: one 0-based record position of data_file per line.'),
  freeze_weak: z.boolean(),
  loss_on: z.enum(['all', 'completion']),
  system_prompt: z
    .string()
    .nullable()
    .default(null)
    .describe(
      "null: the original's conversation format; a string: Stage-1 SFT's format with this system prompt (joint.promptFormat stage1).",
    ),
};
export const JointJob = z.object(withConfigDefaults(jointJobShape, JOINT_MAPPING, RUN_MAPPING)).strict();

/** Job field → config key, so a kernel error names what the user wrote. */
export const JOINT_CONFIG_KEYS: Record<string, string> = {
  ...configKeys(JOINT_MAPPING),
  ...configKeys(RUN_MAPPING),
  data_file: 'dataFile',
};

/** The joint job of a run (`joint`: the config's section, with the out-of-memory back-off's batch layout). */
export function jointJob(
  config: RunConfig,
  joint: RunConfig['joint'],
  at: { fusedDir: string; indicesFile: string; dataFile: string; outputDir: string },
) {
  const job = {
    ...jobFields(JOINT_MAPPING, joint),
    ...jobFields(RUN_MAPPING, config),
    system_prompt: joint.promptFormat === 'stage1' ? (config.sft.systemPrompt ?? DEFAULT_SFT_SYSTEM_PROMPT) : null,
    fused_dir: at.fusedDir,
    indices_file: at.indicesFile,
    data_file: at.dataFile,
    output_dir: at.outputDir,
  };
  return job as Omit<z.input<typeof JointJob>, 'log_file'>;
}

export const joint: StepRow = {
  id: 'joint',
  number: '5b',
  title: 'joint training on the resampled data',
  activity: 'trainJoint',
  queue: 'gpu',
  needs: ['fuse', 'merge'],
  inputs: (c) => [A.FUSED_INIT_DIR, A.RESAMPLED_POSITIONS, c.dataFile],
  outputs: (c) => [`${A.stage3Dir(c)}/checkpoint-N`],
  timeouts: TRAINING_TIMEOUTS,
  retry: GPU_RETRY,
  code: {
    ts: [
      'pipeline/stepDefinitions/joint.ts',
      'activities/stepActivities/jointActivity.ts',
      'activities/stepActivities/trainingRuntime.ts',
    ],
    kernel: [
      'kernels/wmss_kernels/joint.py',
      'kernels/wmss_kernels/fused.py',
      'kernels/wmss_kernels/train_loop.py',
      'kernels/wmss_kernels/sharding.py',
    ],
  },
};
