/**
 * Activity `trainJoint` of step 5b: the joint kernel on the fused checkpoint of step 5a and the
 * resample of step 3 (torchrun with one rank per GPU on a worker with several), under the
 * out-of-memory back-off and the disk checks of trainingRuntime.ts.
 */
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import { KERNEL_VERSION } from '../../pipeline/kernelJobs';
import type { StepInput, StepResult } from '../../pipeline/steps';
import { heartbeat, type GpuRuntime } from '../gpuRuntime';
import { resolveRun } from '../runPaths';
import { runTrainingStep } from './groupMember';
import { digestTextInput } from '../store/digest';
import { countLines, modelTensorStats } from '../store/diskSpace';
import { checkSplit, trainingDisk, worldSize, trainToCheckpoint, withoutRetention } from './trainingRuntime';
import { JOINT_CONFIG_KEYS, jointJob } from '../../pipeline/stepDefinitions/joint';

export function trainJoint(rt: GpuRuntime) {
  return async (input: StepInput): Promise<StepResult> => {
    const run = resolveRun(input.config);
    const { joint } = input.config;
    return runTrainingStep(input, {
      cacheKey: {
        kernel: KERNEL_VERSION,
        joint: withoutRetention(joint),
        dataFormat: input.config.dataFormat,
        fused: input.deps.fuse!.cacheKey,
        resample: input.deps.merge!.cacheKey,
        data: await digestTextInput(run.runDir, run.dataFile, 'dataFile'),
      },
      outputs: { dir: A.stage3Dir(input.config) },
      mode: 'in-place',
      heartbeat,
      produce: async ({ paths }) => {
        checkSplit(joint, 'joint', worldSize(rt, input));
        const fusedDir = path.join(run.runDir, input.deps.fuse!.outputs.fused);
        const positions = path.join(run.runDir, input.deps.merge!.outputs.positions);
        const { params } = await modelTensorStats(fusedDir);
        const trainable = joint.freezeWeak ? params / 2 : params;
        const disk = await trainingDisk(rt, input, joint, paths.dir, { params, trainable }, () =>
          countLines(positions),
        );
        return trainToCheckpoint(
          rt,
          input,
          run,
          {
            verb: 'joint',
            t: joint,
            configKeys: JOINT_CONFIG_KEYS,
            job: (laidOut) =>
              jointJob(input.config, laidOut, {
                fusedDir,
                indicesFile: positions,
                dataFile: run.dataFile,
                outputDir: paths.dir,
              }),
          },
          { dir: fusedDir, params, trainable, branches: 2 },
          disk,
        );
      },
    });
  };
}
