/**
 * Step 5a `fuseModels`: the fused initial checkpoint `ensemble_m1_m2/` (docs/kernel-protocol.md,
 * "The fused checkpoint layout"; docs/method.md#layout-on-disk): weak m0 as `sub_models.0.*`, strong m1 as
 * `sub_models.1.*`, streamed tensor by tensor from both safetensors sources, no model load.
 * Unlike the original (one bf16 pytorch_model.bin), tensors keep their dtype and the file is safetensors.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import { ARCHITECTURE_KEYS } from '../../pipeline/kernelJobs';
import type { StepInput, StepResult } from '../../pipeline/steps';
import { runStep } from '../store/artifactStore';
import { canonicalJson } from '../store/canonicalJson';
import { invalidInput } from '../store/failures';
import { activityHeartbeat, progressDetails, type Heartbeat } from '../store/heartbeat';
import {
  copyFiles,
  isTokenizerFile,
  readModelConfig,
  topLevelFiles,
  writeJson,
  type ModelConfig,
} from '../store/modelDir';
import { hasSafetensors, listModelTensors, SINGLE_WEIGHTS, type TensorLocation } from '../store/safetensors';
import { writeSafetensors, type TensorToWrite } from '../store/safetensorsWriter';
import { resolveRun } from '../runPaths';
import { estimateOrNone, modelTensorStats, requireDiskSpace } from '../store/diskSpace';

const EMBEDDING = 'model.embed_tokens.weight';
const LM_HEAD = 'lm_head.weight';

/**
 * The architecture keys (the joint kernel's list, pipeline/kernelJobs.ts) on which the two
 * configs differ, compared as the kernel does: an absent key equals null, key order does not count.
 */
export function architectureDifferences(weak: ModelConfig, strong: ModelConfig): string[] {
  const same = (k: string) => canonicalJson(weak[k] ?? null) === canonicalJson(strong[k] ?? null);
  return ARCHITECTURE_KEYS.filter((k) => !same(k)).map(
    (k) => `${k}: weak=${JSON.stringify(weak[k]) ?? 'absent'} strong=${JSON.stringify(strong[k]) ?? 'absent'}`,
  );
}

/** The tensors of one branch, with lm_head written out when the embedding is tied (the joint kernel expects it). */
async function branchTensors(dir: string, config: ModelConfig): Promise<TensorLocation[]> {
  if (!(await hasSafetensors(dir)))
    throw invalidInput(dir, undefined, undefined, 'fusing needs safetensors weights (model.safetensors or an index)');
  const { tensors, byKey } = await listModelTensors(dir);
  if (byKey.has(LM_HEAD)) return tensors;
  if (config.tie_word_embeddings === false)
    throw invalidInput(
      path.join(dir, 'config.json'),
      undefined,
      LM_HEAD,
      'no lm_head.weight and tie_word_embeddings is false',
    );
  const embedding = byKey.get(EMBEDDING);
  if (!embedding) throw invalidInput(dir, undefined, EMBEDDING, `no ${LM_HEAD} and no ${EMBEDDING} to tie it to`);
  return [...tensors, { ...embedding, name: LM_HEAD }];
}

/**
 * Both branches are built from the weak config (docs/method.md#mixing-logits), so they need the same tensor
 * names and shapes; a config that agrees on paper but weights that do not would fail only when
 * the joint kernel loads the fused checkpoint. dtypes may differ (each keeps its own).
 */
export function checkSameTensors(
  weakDir: string,
  weakAll: TensorLocation[],
  strongDir: string,
  strongAll: TensorLocation[],
): void {
  // rotary inv_freq is a buffer older checkpoints saved and newer ones do not (transformers skips it on load)
  const weights = (ts: TensorLocation[]) => ts.filter((t) => !/(^|\.)rotary_emb\.inv_freq$/.test(t.name));
  const [weak, strong] = [weights(weakAll), weights(strongAll)];
  const strongByName = new Map(strong.map((t) => [t.name, t]));
  const weakNames = new Set(weak.map((t) => t.name));
  for (const w of weak) {
    const s = strongByName.get(w.name);
    if (!s)
      throw invalidInput(
        strongDir,
        undefined,
        w.name,
        `tensor of the weak model (${weakDir}) is missing from the strong model`,
      );
    if (JSON.stringify(s.shape) !== JSON.stringify(w.shape)) {
      throw invalidInput(
        s.file,
        undefined,
        w.name,
        `shape [${s.shape.join(',')}] differs from the weak model's [${w.shape.join(',')}] (${w.file})`,
      );
    }
  }
  const extra = strong.find((t) => !weakNames.has(t.name));
  if (extra)
    throw invalidInput(
      extra.file,
      undefined,
      extra.name,
      `tensor of the strong model is missing from the weak model (${weakDir})`,
    );
}

export function fusedConfig(weak: ModelConfig, strong: ModelConfig, fusionLambda: number): Record<string, unknown> {
  return {
    ...weak,
    num_sub_models: 2,
    architectures: ['QwenBoostForCausalLM'],
    is_llmboost: false,
    sub_model_cfgs: [weak, strong],
    fusion_lambda: fusionLambda,
  };
}

export async function fuseModelDirs(
  weakDir: string,
  strongDir: string,
  outDir: string,
  fusionLambda: number,
  heartbeat: Heartbeat = () => undefined,
): Promise<Record<string, number | string>> {
  const [weak, strong] = await Promise.all([readModelConfig(weakDir), readModelConfig(strongDir)]);
  const differences = architectureDifferences(weak, strong);
  if (differences.length) {
    throw invalidInput(
      path.join(strongDir, 'config.json'),
      undefined,
      differences.map((d) => d.split(':')[0]).join(','),
      `weak (${weakDir}) and strong models differ in architecture: ${differences.join('; ')}`,
    );
  }
  const branches = [await branchTensors(weakDir, weak), await branchTensors(strongDir, strong)];
  checkSameTensors(weakDir, branches[0], strongDir, branches[1]);
  const plan: TensorToWrite[] = branches.flatMap((tensors, i) =>
    tensors.map((t) => ({ name: `sub_models.${i}.${t.name}`, source: t })),
  );
  const total = plan.reduce((s, t) => s + t.source.byteLength, 0);

  await fsp.mkdir(outDir, { recursive: true });
  const written = await writeSafetensors(path.join(outDir, SINGLE_WEIGHTS), plan, {
    metadata: { format: 'pt' },
    onBytes: (n) => heartbeat({ ...progressDetails(n, total, 'bytes'), phase: 'write fused weights' }),
  });
  await writeJson(path.join(outDir, 'config.json'), fusedConfig(weak, strong, fusionLambda));
  const tokenizer = (await topLevelFiles(weakDir)).filter(isTokenizerFile);
  await copyFiles(weakDir, tokenizer, outDir);
  return { tensors: written.tensors, bytes: written.bytes, tokenizerFiles: tokenizer.length };
}

/** Activity of step 5a. Its inputs (m0, m1) enter the cache key through the dependencies' manifests. */
export async function fuseModels(input: StepInput): Promise<StepResult> {
  const run = resolveRun(input.config);
  const checkpoint = input.deps.sft?.outputs.checkpoint;
  if (!checkpoint)
    throw invalidInput('deps.sft', undefined, 'outputs.checkpoint', 'step 1 reported no final checkpoint');
  const weakDir = path.join(run.runDir, input.deps.snapshot?.outputs.model ?? A.STAGE0_DIR);
  const strongDir = path.join(run.runDir, checkpoint);
  return runStep(input, {
    cacheKey: { version: 1, fusionLambda: input.config.joint.fusionLambda },
    outputs: { fused: A.FUSED_INIT_DIR },
    mode: 'atomic',
    heartbeat: activityHeartbeat,
    produce: async ({ paths, heartbeat }) => {
      // disk safety: the weights of both branches (activities/store/diskSpace.ts)
      const estimate = await estimateOrNone(async () => ({
        bytes: (await modelTensorStats(weakDir)).bytes + (await modelTensorStats(strongDir)).bytes,
        what: 'the weights of m0 and m1',
      }));
      await requireDiskSpace(input.config, input.stepId, run.runDir, estimate);
      return {
        metrics: await fuseModelDirs(weakDir, strongDir, paths.fused, input.config.joint.fusionLambda, heartbeat),
      };
    },
  });
}
