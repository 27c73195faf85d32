/**
 * Step 6 `extractSubmodel`: one branch of the final fused checkpoint as a plain HF model
 * (docs/method.md#extraction-step-6): keys `sub_models.<i>.*` with the prefix stripped, `prev_` keys skipped, cast to
 * the configured dtype on the fly. Unlike the original it writes safetensors and a
 * generation_config.json, so evaluation and vLLM read it directly.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import type { RunConfig } from '../../pipeline/config';
import type { StepInput, StepResult } from '../../pipeline/steps';
import { runStep } from '../store/artifactStore';
import { invalidInput } from '../store/failures';
import { activityHeartbeat, progressDetails, type Heartbeat } from '../store/heartbeat';
import { copyFiles, isTokenizerFile, readJsonObject, topLevelFiles, writeJson } from '../store/modelDir';
import { listModelTensors, SINGLE_WEIGHTS, type Dtype, type TensorLocation } from '../store/safetensors';
import { writeSafetensors, type TensorToWrite } from '../store/safetensorsWriter';
import { resolveRun } from '../runPaths';
import { estimateOrNone, modelTensorStats, requireDiskSpace } from '../store/diskSpace';

type ExtractDtype = RunConfig['extract']['dtype'];

/** Keys of the fused config that describe the ensemble, not the branch. */
const ENSEMBLE_KEYS = ['num_sub_models', 'is_llmboost', 'sub_model_cfgs', 'fusion_lambda'];
const SAFETENSORS_DTYPE: Record<Exclude<ExtractDtype, 'keep'>, Dtype> = { bfloat16: 'BF16', float32: 'F32' };
const CASTABLE: ReadonlySet<Dtype> = new Set(['BF16', 'F32', 'F16', 'F64']);

/** Which fused tensors become which extracted keys, and in which dtype. */
export function extractionPlan(tensors: TensorLocation[], submodelIdx: number, dtype: ExtractDtype): TensorToWrite[] {
  const prefix = `sub_models.${submodelIdx}.`;
  const target = dtype === 'keep' ? undefined : SAFETENSORS_DTYPE[dtype];
  return tensors
    .filter((t) => t.name.startsWith(prefix) && !t.name.includes('prev_'))
    .map((t) => ({
      name: t.name.slice(prefix.length),
      source: t,
      dtype: target && CASTABLE.has(t.dtype) ? target : undefined,
    }));
}

/** config.json of the branch: `sub_model_cfgs[idx]` without the ensemble keys. */
export function branchConfig(
  fused: Record<string, unknown>,
  submodelIdx: number,
  dtype: ExtractDtype,
  configFile: string,
): Record<string, unknown> {
  const cfgs = fused.sub_model_cfgs;
  const cfg = Array.isArray(cfgs) ? cfgs[submodelIdx] : undefined;
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg))
    throw invalidInput(
      configFile,
      undefined,
      'sub_model_cfgs',
      `no config for sub-model ${submodelIdx}: not a fused checkpoint`,
    );
  const out: Record<string, unknown> = { ...(cfg as Record<string, unknown>) };
  for (const key of ENSEMBLE_KEYS) delete out[key];
  if (!Array.isArray(out.architectures) || out.architectures.length === 0) out.architectures = ['Qwen3ForCausalLM'];
  if (dtype !== 'keep') {
    // keep the declared dtype honest about the cast weights (both spellings transformers reads)
    out.torch_dtype = dtype;
    if ('dtype' in out) out.dtype = dtype;
  }
  return out;
}

export function generationConfig(branch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of ['bos_token_id', 'eos_token_id', 'pad_token_id'])
    if (branch[key] !== undefined && branch[key] !== null) out[key] = branch[key];
  return out;
}

export async function extractSubmodelDir(
  fusedDir: string,
  outDir: string,
  submodelIdx: number,
  dtype: ExtractDtype,
  heartbeat: Heartbeat = () => undefined,
): Promise<Record<string, number | string>> {
  const configFile = path.join(fusedDir, 'config.json');
  const branch = branchConfig(await readJsonObject(configFile), submodelIdx, dtype, configFile);
  const { tensors } = await listModelTensors(fusedDir);
  const plan = extractionPlan(tensors, submodelIdx, dtype);
  if (plan.length === 0)
    throw invalidInput(fusedDir, undefined, `sub_models.${submodelIdx}.`, 'no tensors with this prefix');
  const total = plan.reduce((s, t) => s + t.source.byteLength, 0);

  await fsp.mkdir(outDir, { recursive: true });
  const written = await writeSafetensors(path.join(outDir, SINGLE_WEIGHTS), plan, {
    metadata: { format: 'pt' },
    onBytes: (n) => heartbeat({ ...progressDetails(n, total, 'bytes'), phase: 'write weights' }),
  });
  await writeJson(path.join(outDir, 'config.json'), branch);
  await writeJson(path.join(outDir, 'generation_config.json'), generationConfig(branch));
  const tokenizer = (await topLevelFiles(fusedDir)).filter(isTokenizerFile);
  await copyFiles(fusedDir, tokenizer, outDir);
  return {
    tensors: written.tensors,
    bytes: written.bytes,
    skippedPrev: tensors.filter((t) => t.name.startsWith(`sub_models.${submodelIdx}.`) && t.name.includes('prev_'))
      .length,
  };
}

/** Activity of step 6. */
export async function extractSubmodel(input: StepInput): Promise<StepResult> {
  const run = resolveRun(input.config);
  const checkpoint = input.deps.joint?.outputs.checkpoint;
  if (!checkpoint)
    throw invalidInput('deps.joint', undefined, 'outputs.checkpoint', 'step 5b reported no final checkpoint');
  const { extract } = input.config;
  return runStep(input, {
    cacheKey: { version: 1, extract },
    outputs: { model: A.extractedDir(input.config) },
    mode: 'atomic',
    heartbeat: activityHeartbeat,
    produce: async ({ paths, heartbeat }) => {
      // disk safety: one branch of the fused checkpoint, in the target dtype (activities/store/diskSpace.ts)
      const estimate = await estimateOrNone(async () => {
        const branch = await modelTensorStats(path.join(run.runDir, checkpoint), `sub_models.${extract.submodelIdx}.`);
        return {
          bytes: extract.dtype === 'keep' ? branch.bytes : branch.params * (extract.dtype === 'float32' ? 4 : 2),
          what: `sub-model ${extract.submodelIdx} of the joint checkpoint (${extract.dtype})`,
        };
      });
      await requireDiskSpace(input.config, input.stepId, run.runDir, estimate);
      return {
        metrics: await extractSubmodelDir(
          path.join(run.runDir, checkpoint),
          paths.model,
          extract.submodelIdx,
          extract.dtype,
          heartbeat,
        ),
      };
    },
  });
}
