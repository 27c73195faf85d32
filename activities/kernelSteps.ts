/**
 * The activities of a GPU worker: the GPU steps (0, 1, 2, 5b, 5c, 7 and the ONNX exports), each
 * defined with its step (activities/stepActivities/<step>Activity.ts), all running their kernels through one
 * runtime on this worker's devices (./gpuRuntime.ts).
 */
import { computeEntropy } from './stepActivities/entropyActivity';
import { evaluate } from './stepActivities/evaluateActivity';
import { trainJoint } from './stepActivities/jointActivity';
import { trainContinuedSft } from './stepActivities/continuedSftActivity';
import { exportOnnx } from './stepActivities/onnxExportActivity';
import { trainSft } from './stepActivities/sftActivity';
import { gpuRuntime, type GpuWorkerContext } from './gpuRuntime';

export type { GpuWorkerContext };

export function kernelSteps(ctx: GpuWorkerContext) {
  const rt = gpuRuntime(ctx);
  return {
    exportOnnx: exportOnnx(rt),
    computeEntropy: computeEntropy(rt),
    trainSft: trainSft(rt),
    trainJoint: trainJoint(rt),
    trainContinuedSft: trainContinuedSft(rt),
    evaluate: evaluate(rt),
  };
}
