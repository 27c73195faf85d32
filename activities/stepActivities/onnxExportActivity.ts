/** Activity `exportOnnx` of steps 0x, 2x, 7x: the export-onnx kernel under the artifact store (activities/onnx/exportStep.ts). */
import type { StepInput, StepResult } from '../../pipeline/steps';
import type { GpuRuntime } from '../gpuRuntime';
import { exportOnnxStep } from '../onnx/exportStep';
import { resolveRun } from '../runPaths';

export function exportOnnx(rt: GpuRuntime) {
  return async (input: StepInput): Promise<StepResult> => {
    const run = resolveRun(input.config);
    return exportOnnxStep(input, run, (job) => rt.kernel(input, run, 'export-onnx', job));
  };
}
