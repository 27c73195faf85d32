/**
 * Activity `trainContinuedSft` of step 5c, the baseline arm: the joint kernel on m1 alone
 * (model_path), with step 5b's job otherwise (pipeline/stepDefinitions/continuedSft.ts), under the
 * out-of-memory back-off and the disk checks of trainingRuntime.ts.
 */
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import * as A from '../../pipeline/artifacts';
import { KERNEL_VERSION } from '../../pipeline/kernelJobs';
import type { StepInput, StepResult } from '../../pipeline/steps';
import { heartbeat, type GpuRuntime } from '../gpuRuntime';
import { resolveRun } from '../runPaths';
import { runStep } from '../store/artifactStore';
import { digestTextInput } from '../store/digest';
import { countLines, modelTensorStats } from '../store/diskSpace';
import { checkSplit, trainingDisk, trainToCheckpoint, withoutRetention } from './trainingRuntime';
import { JOINT_CONFIG_KEYS } from '../../pipeline/stepDefinitions/joint';
import { CONTINUED_SFT_IGNORES, continuedSftJob } from '../../pipeline/stepDefinitions/continuedSft';

/** With data original: every record once, in file order (the kernel shuffles per epoch as for 5b). */
const ORIGINAL_POSITIONS = 'original_positions.txt';

export function trainContinuedSft(rt: GpuRuntime) {
  return async (input: StepInput): Promise<StepResult> => {
    const run = resolveRun(input.config);
    const { joint, baseline } = input.config;
    // λ and the weak branch's freezing do not touch a plain model: left out, they share one cache entry
    const training = Object.fromEntries(
      Object.entries(withoutRetention(joint)).filter(
        ([k]) => !(CONTINUED_SFT_IGNORES as readonly string[]).includes(k),
      ),
    );
    return runStep(input, {
      cacheKey: {
        kernel: KERNEL_VERSION,
        training,
        data: baseline.data,
        dataFormat: input.config.dataFormat,
        m1: input.deps.sft!.cacheKey,
        resample: input.deps.merge!.cacheKey,
        dataFile: await digestTextInput(run.runDir, run.dataFile, 'dataFile'),
      },
      outputs: { dir: A.CONTINUED_SFT_DIR },
      mode: 'in-place',
      heartbeat,
      produce: async ({ paths }) => {
        checkSplit(joint, 'joint', rt.devices);
        const m1 = path.join(run.runDir, input.deps.sft!.outputs.checkpoint);
        const resampled = path.join(run.runDir, input.deps.merge!.outputs.positions);
        let indicesFile = resampled;
        let t = joint;
        if (baseline.data === 'original') {
          // 5b's optimizer steps, as its kernel computes them from the resample's size
          const steps =
            joint.maxSteps ??
            Math.floor(((await countLines(resampled)) * joint.epochs) / (joint.microBatch * joint.gradAccum));
          const records = await countLines(run.dataFile);
          indicesFile = path.join(paths.dir, ORIGINAL_POSITIONS);
          await fsp.mkdir(paths.dir, { recursive: true });
          await fsp.writeFile(indicesFile, Array.from({ length: records }, (_, i) => `${i}\n`).join(''));
          t = { ...joint, maxSteps: Math.max(1, steps) };
        }
        const { params } = await modelTensorStats(m1);
        const disk = await trainingDisk(rt, input, t, paths.dir, { params, trainable: params }, () =>
          countLines(indicesFile),
        );
        return trainToCheckpoint(
          rt,
          input,
          run,
          {
            verb: 'joint',
            t,
            configKeys: JOINT_CONFIG_KEYS,
            job: (laidOut) =>
              continuedSftJob(input.config, laidOut, {
                modelPath: m1,
                indicesFile,
                dataFile: run.dataFile,
                outputDir: paths.dir,
              }),
          },
          { dir: m1, params, trainable: params, branches: 1 },
          disk,
        );
      },
    });
  };
}
