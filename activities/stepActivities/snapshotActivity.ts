/**
 * Step 4 `snapshotBase`: copy the base model dir into `stage0_m0/` (the weak branch m0), as the
 * original's copymodel.py does by loading and re-saving, but as a file copy: same bytes, no GPU,
 * no Python. The dir is validated first so a wrong path fails here, not days later in step 5b.
 */
import { baseModelKey } from '../store/modelKey';
import * as A from '../../pipeline/artifacts';
import type { StepInput, StepResult } from '../../pipeline/steps';
import { runStep } from '../store/artifactStore';
import { invalidInput } from '../store/failures';
import { activityHeartbeat, progressDetails, type Heartbeat } from '../store/heartbeat';
import { copyFiles, readModelConfig, topLevelFiles } from '../store/modelDir';
import { hasSafetensors, listModelTensors } from '../store/safetensors';
import { resolveRun } from '../runPaths';
import { estimateOrNone, modelDirBytes, requireDiskSpace } from '../store/diskSpace';

const TORCH_WEIGHTS = /^pytorch_model(-\d+-of-\d+)?\.bin$|^pytorch_model\.bin\.index\.json$/;

export interface ModelDirCheck {
  modelType: string;
  weights: 'safetensors' | 'bin';
  tensors: number;
}

/** The files the kernels load a tokenizer from (modeling.load_tokenizer); one must be there. */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'];

/** A model dir: config.json with model_type, a tokenizer, and weights (safetensors with valid headers, or .bin as is). */
export async function checkModelDir(dir: string): Promise<ModelDirCheck> {
  const config = await readModelConfig(dir);
  if (!(await topLevelFiles(dir)).some((f) => TOKENIZER_FILES.includes(f))) {
    throw invalidInput(
      dir,
      undefined,
      undefined,
      `no tokenizer (${TOKENIZER_FILES.join(' or ')}): steps 0, 1 and 7 load it from the model dir`,
    );
  }
  if (await hasSafetensors(dir)) {
    const weights = await listModelTensors(dir);
    return { modelType: config.model_type, weights: 'safetensors', tensors: weights.tensors.length };
  }
  if ((await topLevelFiles(dir)).some((f) => TORCH_WEIGHTS.test(f)))
    return { modelType: config.model_type, weights: 'bin', tensors: 0 };
  throw invalidInput(
    dir,
    undefined,
    undefined,
    'no weights (model.safetensors, model.safetensors.index.json or pytorch_model*.bin)',
  );
}

/** Copy every top-level non-dot file of `baseModel` into `dest` (created). */
export async function snapshotModelDir(
  baseModel: string,
  dest: string,
  heartbeat: Heartbeat = () => undefined,
): Promise<Record<string, number | string>> {
  const check = await checkModelDir(baseModel);
  const files = await topLevelFiles(baseModel);
  const bytes = await copyFiles(baseModel, files, dest, (name, i) =>
    heartbeat({ ...progressDetails(i, files.length, 'files'), phase: `copy ${name}` }),
  );
  return { modelType: check.modelType, weights: check.weights, tensors: check.tensors, files: files.length, bytes };
}

/** Activity of step 4. Cache key: the digest of the base model dir (memoised, so hashed once). */
export async function snapshotBase(input: StepInput): Promise<StepResult> {
  const run = resolveRun(input.config);
  return runStep(input, {
    cacheKey: { version: 1, base: await baseModelKey(run.runDir, run.baseModel, input) },
    outputs: { model: A.STAGE0_DIR },
    mode: 'atomic',
    heartbeat: activityHeartbeat,
    produce: async ({ paths, heartbeat }) => {
      // disk safety: one copy of the base model dir (activities/store/diskSpace.ts)
      await requireDiskSpace(
        input.config,
        input.stepId,
        run.runDir,
        await estimateOrNone(async () => ({
          bytes: await modelDirBytes(run.baseModel),
          what: 'one copy of the base model dir',
        })),
      );
      return { metrics: await snapshotModelDir(run.baseModel, paths.model, heartbeat) };
    },
  });
}
