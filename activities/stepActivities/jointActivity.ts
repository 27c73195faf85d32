/**
 * Activity `trainJoint` of step 5b: the joint kernel on the fused checkpoint of step 5a and the
 * resample of step 3 (torchrun with one rank per GPU on a worker with several), under the
 * out-of-memory back-off and the disk checks of ../training/runtime.ts.
 */
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import { KERNEL_VERSION } from '../../pipeline/kernelJobs';
import type { StepInput, StepResult } from '../../pipeline/steps';
import { heartbeat, relativeToRun, type GpuRuntime } from '../gpuRuntime';
import { withOomBackoff } from '../oomBackoff';
import { resolveRun } from '../runPaths';
import { runStep } from '../store/artifactStore';
import { digestTextInput } from '../store/digest';
import { countLines, modelTensorStats } from '../store/diskSpace';
import {
  bytesPerParam,
  checkSplit,
  memoryEstimateGiB,
  simulatedOom,
  trainingDisk,
  withoutRetention,
} from './trainingRuntime';
import { JOINT_CONFIG_KEYS, jointJob } from '../../pipeline/stepDefinitions/joint';

export function trainJoint(rt: GpuRuntime) {
  return async (input: StepInput): Promise<StepResult> => {
    const run = resolveRun(input.config);
    const { joint } = input.config;
    return runStep(input, {
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
        checkSplit(joint, 'joint', rt.devices);
        const fusedDir = path.join(run.runDir, input.deps.fuse!.outputs.fused);
        const positions = path.join(run.runDir, input.deps.merge!.outputs.positions);
        const { params } = await modelTensorStats(fusedDir);
        const trainable = joint.freezeWeak ? params / 2 : params;
        const disk = await trainingDisk(rt, input, joint, paths.dir, { params, trainable }, () =>
          countLines(positions),
        );
        return withOomBackoff(run.runDir, input.stepId, joint, async (layout) => {
          const laidOut = { ...joint, microBatch: layout.microBatch, gradAccum: layout.gradAccum };
          const out = await rt.kernel(
            input,
            run,
            'joint',
            {
              ...jointJob(input.config, laidOut, {
                fusedDir,
                indicesFile: positions,
                dataFile: run.dataFile,
                outputDir: paths.dir,
              }),
              ...simulatedOom(input, layout),
              memory_estimate_gib: await memoryEstimateGiB(
                fusedDir,
                laidOut,
                { params, trainable, branches: 2 },
                rt.devices,
                bytesPerParam(rt, input, joint),
              ),
            },
            { processes: rt.devices, onProgress: disk.onProgress, configKeys: JOINT_CONFIG_KEYS },
          );
          await disk.finish();
          return {
            metrics: { ...out.metrics, oom_halvings: layout.halvings },
            outputs: { checkpoint: relativeToRun(run, out.outputs.checkpoint) },
          };
        });
      },
    });
  };
}
