/**
 * The ONNX export steps (onnxBase, onnxM1, onnxWmss), run on a GPU worker (they need Python and
 * torch): the `export-onnx` kernel under the artifact store, published atomically as
 * onnx/<label>/ (graphs, manifest.json, tokenizer files). Only in configs with an onnx backend.
 */
import { baseModelKey } from '../store/modelKey';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import type { KernelJob } from '../../pipeline/kernelJobs';
import type { StepInput, StepResult } from '../../pipeline/steps';
import type { KernelOutcome } from '../kernelBridge';
import type { ResolvedRun } from '../runPaths';
import { runStep } from '../store/artifactStore';
import { activityHeartbeat } from '../store/heartbeat';

/** Version of the export (graph layout, manifest format); part of the cache key. */
export const ONNX_EXPORT_VERSION = 'wmss-onnx/1';

export type ExportKernel = (
  job: Omit<KernelJob<'export-onnx'>, 'log_file' | 'device' | 'seed'>,
) => Promise<KernelOutcome>;

export async function exportOnnxStep(input: StepInput, run: ResolvedRun, kernel: ExportKernel): Promise<StepResult> {
  const { deps } = input;
  let modelPath: string;
  let modelKey: string;
  let output: string;
  if (input.stepId === 'onnxBase') {
    [modelPath, modelKey, output] = [run.baseModel, await baseModelKey(run.runDir, run.baseModel, input), A.ONNX_BASE];
  } else if (input.stepId === 'onnxM1') {
    [modelPath, modelKey, output] = [
      path.join(run.runDir, deps.sft!.outputs.checkpoint),
      deps.sft!.cacheKey,
      A.ONNX_M1,
    ];
  } else if (input.stepId === 'onnxWmss') {
    [modelPath, modelKey, output] = [
      path.join(run.runDir, deps.extract!.outputs.model),
      deps.extract!.cacheKey,
      A.ONNX_WMSS,
    ];
  } else {
    throw new Error(`exportOnnx does not handle step ${input.stepId}`);
  }
  return runStep(input, {
    cacheKey: { export: ONNX_EXPORT_VERSION, model: modelKey },
    outputs: { onnx: output },
    mode: 'atomic',
    heartbeat: activityHeartbeat,
    produce: async ({ paths }) => {
      const out = await kernel({ model_path: modelPath, output_dir: paths.onnx });
      return { metrics: out.metrics };
    },
  });
}
