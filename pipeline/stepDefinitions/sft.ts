/**
 * Step 1, Stage-1 SFT of the base model → m1: table row, the `sft` config section, and the
 * `sft` kernel's job. Sandbox-safe (the workflow loads the row); the activity is ./activity.ts.
 */
import { z } from 'zod';
import * as A from '../artifacts';
import { RUN_MAPPING } from '../jobFields';
import { configKeys, jobFields, withConfigDefaults, type JobMapping } from '../jobMapping';
import type { RunConfig } from '../config';
import type { StepRow } from '../steps';
import { GPU_RETRY, TRAINING_TIMEOUTS } from './policies';
import { trainingFields, trainingJobShape, TRAINING_RENAME, TRAINING_SKIP } from './training';

export const SftConfig = z
  .object({
    ...trainingFields,
    systemPrompt: z
      .string()
      .optional()
      .describe(
        "System prompt of the Stage-1 prompt; default the original's think/answer prompt (docs/method.md#prompt-formats).",
      ),
  })
  .strict();

export const SFT_MAPPING: JobMapping = {
  section: 'sft',
  schema: SftConfig,
  skip: TRAINING_SKIP,
  rename: TRAINING_RENAME,
};

/**
 * The Stage-1 system prompt when sft.systemPrompt is unset: the original's, character for
 * character (a leading space and an ASCII apostrophe, which change the tokens), so that the paper
 * protocol of step 7 evaluates the prompt SFT trained on. The same text is data in
 * data/eval/paper-protocol.json (sftSystemPrompt, with its licence), which the kernels read;
 * test/unit/evalSets.test.ts keeps the two equal. Written here because this module is loaded by
 * the workflow sandbox, which reads no files. The job schema's default, so the kernel gets it
 * from job_schema.json.
 */
export const DEFAULT_SFT_SYSTEM_PROMPT =
  " You are a helpful assistant. To answer the user's question, you first think about the" +
  ' reasoning process and then provide the user with the answer. The reasoning process and' +
  ' answer are enclosed within <think> and <answer> tags, respectively, i.e., <think>' +
  ' reasoning process here </think> <answer> answer here </answer>.';

const sftJobShape = {
  ...trainingJobShape,
  model_path: z.string().describe('The base model directory.'),
  system_prompt: z.string().default(DEFAULT_SFT_SYSTEM_PROMPT),
};
export const SftJob = z.object(withConfigDefaults(sftJobShape, SFT_MAPPING, RUN_MAPPING)).strict();

/** Job field → config key, so a kernel error names what the user wrote. */
export const SFT_CONFIG_KEYS: Record<string, string> = {
  ...configKeys(SFT_MAPPING),
  ...configKeys(RUN_MAPPING),
  data_file: 'dataFile',
  model_path: 'baseModel',
};

/** The sft job of a run (`sft`: the config's section, with the out-of-memory back-off's batch layout). */
export function sftJob(
  config: RunConfig,
  sft: RunConfig['sft'],
  at: { modelPath: string; dataFile: string; outputDir: string },
) {
  const job = {
    ...jobFields(SFT_MAPPING, sft),
    ...jobFields(RUN_MAPPING, config),
    model_path: at.modelPath,
    data_file: at.dataFile,
    output_dir: at.outputDir,
  };
  return job as Omit<z.input<typeof SftJob>, 'log_file'>;
}

export const sft: StepRow = {
  id: 'sft',
  number: '1',
  title: 'Stage-1 SFT of the base → m1',
  activity: 'trainSft',
  queue: 'gpu',
  needs: [],
  inputs: (c) => [c.baseModel, c.dataFile],
  outputs: () => [`${A.STAGE1_DIR}/checkpoint-N`],
  timeouts: TRAINING_TIMEOUTS,
  retry: GPU_RETRY,
  code: {
    ts: [
      'pipeline/stepDefinitions/sft.ts',
      'activities/stepActivities/sftActivity.ts',
      'activities/stepActivities/trainingRuntime.ts',
    ],
    kernel: ['kernels/wmss_kernels/sft.py', 'kernels/wmss_kernels/train_loop.py'],
  },
};
