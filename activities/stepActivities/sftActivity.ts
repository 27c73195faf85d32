/**
 * Activity `trainSft` of step 1: the sft kernel on the base model (torchrun with one rank per
 * GPU on a worker with several), under the out-of-memory back-off and the disk checks of
 * trainingRuntime.ts.
 */
import { baseModelKey } from '../store/modelKey';
import { ApplicationFailure } from '@temporalio/common';
import * as A from '../../pipeline/artifacts';
import type { RunConfig } from '../../pipeline/config';
import { ErrorTypes } from '../../pipeline/errors';
import { KERNEL_VERSION } from '../../pipeline/kernelJobs';
import type { StepInput, StepResult } from '../../pipeline/steps';
import { heartbeat, type GpuRuntime } from '../gpuRuntime';
import { loadChatTokenizer } from '../onnx/tokenizer';
import { resolveRun } from '../runPaths';
import { checkModelDir } from './snapshotActivity';
import { runTrainingStep } from './groupMember';
import { digestTextInput } from '../store/digest';
import { countLines, modelTensorStats } from '../store/diskSpace';
import { checkSplit, trainingDisk, worldSize, trainToCheckpoint, withoutRetention } from './trainingRuntime';
import { DEFAULT_SFT_SYSTEM_PROMPT, SFT_CONFIG_KEYS, sftJob } from '../../pipeline/stepDefinitions/sft';

/**
 * Before the kernel starts (imports, tokenising the whole data file: half a minute and more): an
 * sft.maxLength that the system prompt and chat template fill on their own, before any question,
 * trains on nothing. Best effort: a tokenizer Node cannot load is left to the kernel, which reads
 * it anyway and reports the exact prompt lengths.
 */
export function checkSftMaxLength(modelDir: string, sft: Pick<RunConfig['sft'], 'maxLength' | 'systemPrompt'>): void {
  let floor: number;
  try {
    const tok = loadChatTokenizer(modelDir);
    if (!tok.hasChatTemplate) return;
    floor = tok.encode(
      tok.renderChat(
        [
          { role: 'system', content: sft.systemPrompt ?? DEFAULT_SFT_SYSTEM_PROMPT },
          { role: 'user', content: '' },
        ],
        true,
      ),
    ).length;
  } catch {
    return;
  }
  if (sft.maxLength > floor) return;
  throw ApplicationFailure.create({
    type: ErrorTypes.InvalidConfig,
    nonRetryable: true,
    message: `sft.maxLength ${sft.maxLength} leaves nothing to train on: the system prompt and chat template alone are ${floor} tokens, before the question and the answer. Raise sft.maxLength to more than ${floor} plus the longest question (the sft kernel reports the exact lengths if it is still too short)`,
    details: [{ file: null, line: null, field: 'sft.maxLength', promptTokensWithoutQuestion: floor }],
  });
}

export function trainSft(rt: GpuRuntime) {
  return async (input: StepInput): Promise<StepResult> => {
    const run = resolveRun(input.config);
    const { sft } = input.config;
    return runTrainingStep(input, {
      cacheKey: {
        kernel: KERNEL_VERSION,
        sft: withoutRetention(sft),
        dataFormat: input.config.dataFormat,
        model: await baseModelKey(run.runDir, run.baseModel, input),
        data: await digestTextInput(run.runDir, run.dataFile, 'dataFile'),
      },
      outputs: { dir: A.STAGE1_DIR },
      mode: 'in-place',
      heartbeat,
      produce: async ({ paths }) => {
        checkSplit(sft, 'sft', worldSize(rt, input));
        // a malformed base model fails here as InvalidInput, not as a kernel crash retried 5 times
        await checkModelDir(run.baseModel);
        checkSftMaxLength(run.baseModel, sft);
        const { params } = await modelTensorStats(run.baseModel);
        const disk = await trainingDisk(rt, input, sft, paths.dir, { params, trainable: params }, () =>
          countLines(run.dataFile),
        );
        return trainToCheckpoint(
          rt,
          input,
          run,
          {
            verb: 'sft',
            t: sft,
            configKeys: SFT_CONFIG_KEYS,
            job: (laidOut) =>
              sftJob(input.config, laidOut, { modelPath: run.baseModel, dataFile: run.dataFile, outputDir: paths.dir }),
          },
          { dir: run.baseModel, params, trainable: params, branches: 1 },
          disk,
        );
      },
    });
  };
}
