/**
 * Steps 0x, 2x, 7x: ONNX exports of the base model, m1 and the extracted model for the onnx
 * backend (docs/onnx.md), only in configs that use it: table rows and the `export-onnx` kernel's
 * job. Sandbox-safe; the activity is ./activity.ts.
 */
import { z } from 'zod';
import * as A from '../artifacts';
import type { RunConfig } from '../config';
import { common } from '../jobFields';
import type { StepRow } from '../steps';
import { FILE_TIMEOUTS, GPU_RETRY } from './policies';

/** export-onnx: an HF causal LM dir → ONNX graphs (with and without KV cache) + manifest. */
export const ExportOnnxJob = z
  .object({
    ...common,
    model_path: z.string().describe('A Hugging Face causal LM directory.'),
    output_dir: z.string().describe('Written through a temporary sibling and a rename.'),
    opset: z.number().int().min(14).default(17),
    tolerance: z
      .number()
      .positive()
      .default(1e-4)
      .describe('Largest |Δlogit| allowed against PyTorch, relative to max(1, max |logit|).'),
  })
  .strict();

/** Which exports a config needs: base and m1 for onnx entropy or onnx baselines, the extracted model for onnx evaluation. */
function onnxExport(c: RunConfig, model: 'base' | 'm1' | 'wmss'): boolean {
  const evalOnnx = c.eval.backend === 'onnx';
  return model === 'wmss' ? evalOnnx : c.entropy.backend === 'onnx' || (evalOnnx && c.eval.baselines);
}

const code = {
  ts: [
    'pipeline/stepDefinitions/onnxExport.ts',
    'activities/stepActivities/onnxExportActivity.ts',
    'activities/onnx/exportStep.ts',
  ],
  kernel: ['kernels/wmss_kernels/export_onnx.py'],
};

export const onnxBase: StepRow = {
  id: 'onnxBase',
  number: '0x',
  title: 'export the base model to ONNX',
  activity: 'exportOnnx',
  queue: 'gpu',
  needs: [],
  inputs: (c) => [c.baseModel],
  outputs: () => [A.ONNX_BASE],
  timeouts: FILE_TIMEOUTS,
  retry: GPU_RETRY,
  when: (c) => onnxExport(c, 'base'),
  code,
};

export const onnxM1: StepRow = {
  id: 'onnxM1',
  number: '2x',
  title: 'export m1 to ONNX',
  activity: 'exportOnnx',
  queue: 'gpu',
  needs: ['sft'],
  inputs: () => [`${A.STAGE1_DIR}/checkpoint-N`],
  outputs: () => [A.ONNX_M1],
  timeouts: FILE_TIMEOUTS,
  retry: GPU_RETRY,
  when: (c) => onnxExport(c, 'm1'),
  code,
};

export const onnxWmss: StepRow = {
  id: 'onnxWmss',
  number: '7x',
  title: 'export the extracted model to ONNX',
  activity: 'exportOnnx',
  queue: 'gpu',
  needs: ['extract'],
  inputs: (c) => [A.extractedDir(c)],
  outputs: () => [A.ONNX_WMSS],
  timeouts: FILE_TIMEOUTS,
  retry: GPU_RETRY,
  when: (c) => onnxExport(c, 'wmss'),
  code,
};
