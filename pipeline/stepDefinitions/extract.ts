/** Step 6, extract one sub-model: table row and the `extract` config section. Sandbox-safe; the activity is activities/stepActivities/extractActivity.ts. */
import { z } from 'zod';
import * as A from '../artifacts';
import type { StepRow } from '../steps';
import { CPU_RETRY, FILE_TIMEOUTS } from './policies';

export const ExtractConfig = z
  .object({
    submodelIdx: z
      .number()
      .int()
      .min(0)
      .max(1)
      .default(1)
      .describe(
        "Sub-model to extract: 1 = strong branch (repo HEAD and paper v2), 0 = weak branch (the repo's first commit). See docs/method.md#extraction-step-6.",
      ),
    dtype: z
      .enum(['keep', 'bfloat16', 'float32'])
      .default('keep')
      .describe('dtype of the extracted weights (keep = as trained).'),
  })
  .strict();

export const extract: StepRow = {
  id: 'extract',
  number: '6',
  title: 'extract one sub-model',
  activity: 'extractSubmodel',
  queue: 'cpu',
  needs: ['joint'],
  inputs: (c) => [`${A.stage3Dir(c)}/checkpoint-N`],
  outputs: (c) => [A.extractedDir(c)],
  timeouts: FILE_TIMEOUTS,
  retry: CPU_RETRY,
  code: { ts: ['pipeline/stepDefinitions/extract.ts', 'activities/stepActivities/extractActivity.ts'], kernel: [] },
};
