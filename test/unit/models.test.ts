import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { extractSubmodelDir } from '../../activities/stepActivities/extractActivity';
import { fuseModelDirs, fuseModels } from '../../activities/stepActivities/fuseActivity';
import { snapshotBase, snapshotModelDir } from '../../activities/stepActivities/snapshotActivity';
import { readSafetensorsHeader } from '../../activities/store/safetensors';
import * as A from '../../pipeline/artifacts';
import { ErrorTypes } from '../../pipeline/errors';
import type { StepResult } from '../../pipeline/steps';
import { bf16, readF32, writeSafetensorsFixture, writeTinyModel } from './helpers/safetensorsFixture';
import { cleanupTmp, failureOf, stepInput, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

function tensorBytes(file: string) {
  const bytes = readFileSync(file);
  return readSafetensorsHeader(file).then((h) => (name: string) => {
    const t = h.tensors.get(name);
    if (!t) throw new Error(`no tensor ${name}`);
    return { info: t, data: bytes.subarray(h.dataStart + t.data_offsets[0], h.dataStart + t.data_offsets[1]) };
  });
}

describe('fuse', () => {
  it('writes the fused layout from two model dirs, with lm_head written out for a tied embedding', async () => {
    const dir = tmpDir();
    const weak = writeTinyModel(path.join(dir, 'weak'), { tie: true, withLmHead: false });
    // tied too, but with its lm_head saved: both ways of storing a tied head fuse alike
    const strong = writeTinyModel(path.join(dir, 'strong'), { shift: 1000, tie: true });
    const out = path.join(dir, 'fused');
    await fuseModelDirs(path.join(dir, 'weak'), path.join(dir, 'strong'), out, 0.42);

    const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      model_type: 'qwen3',
      num_sub_models: 2,
      architectures: ['QwenBoostForCausalLM'],
      is_llmboost: false,
      fusion_lambda: 0.42,
      tie_word_embeddings: true,
    });
    expect(config.sub_model_cfgs.map((c: any) => c.tie_word_embeddings)).toEqual([true, true]);
    expect(readdirSync(out).sort()).toEqual([
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);

    const get = await tensorBytes(path.join(out, 'model.safetensors'));
    expect(get('sub_models.0.lm_head.weight').data).toEqual(weak['model.embed_tokens.weight'].data);
    expect(get('sub_models.1.lm_head.weight').data).toEqual(strong['lm_head.weight'].data);
    expect(get('sub_models.1.model.layers.0.mlp.up_proj.weight').data).toEqual(
      strong['model.layers.0.mlp.up_proj.weight'].data,
    );
    const h = await readSafetensorsHeader(path.join(out, 'model.safetensors'));
    expect([...h.tensors.keys()].every((k) => /^sub_models\.[01]\./.test(k))).toBe(true);
    expect(h.tensors.size).toBe(8);
  });

  it('refuses models that differ in architecture, naming keys and both values', async () => {
    const dir = tmpDir();
    writeTinyModel(path.join(dir, 'weak'));
    writeTinyModel(path.join(dir, 'strong'), { extraConfig: { num_hidden_layers: 2, vocab_size: 16 } });
    const f = await failureOf(
      fuseModelDirs(path.join(dir, 'weak'), path.join(dir, 'strong'), path.join(dir, 'out'), 0.5),
    );
    expect(f).toMatchObject({ type: ErrorTypes.InvalidInput, nonRetryable: true });
    expect(f.message).toMatch(/vocab_size: weak=8 strong=16; num_hidden_layers: weak=1 strong=2/);
    expect(f.details[0]).toMatchObject({ field: 'vocab_size,num_hidden_layers' });
  });

  it("compares the joint kernel's architecture keys, so a pair fused here also loads in step 5b", async () => {
    // rms_norm_eps, rope_theta, tie_word_embeddings: keys only the kernel compared before
    for (const extra of [{ rms_norm_eps: 1e-5 }, { rope_theta: 10_000 }, { tie_word_embeddings: true }]) {
      const dir = tmpDir();
      writeTinyModel(path.join(dir, 'weak'), { extraConfig: { rms_norm_eps: 1e-6, rope_theta: 1_000_000 } });
      writeTinyModel(path.join(dir, 'strong'), {
        extraConfig: { rms_norm_eps: 1e-6, rope_theta: 1_000_000, ...extra },
      });
      const f = await failureOf(
        fuseModelDirs(path.join(dir, 'weak'), path.join(dir, 'strong'), path.join(dir, 'out'), 0.5),
      );
      expect(f).toMatchObject({ type: ErrorTypes.InvalidInput, details: [{ field: Object.keys(extra)[0] }] });
    }
    // as in the kernel, an absent key equals null and key order inside a value does not count
    const dir = tmpDir();
    writeTinyModel(path.join(dir, 'weak'), {
      extraConfig: { rope_parameters: { rope_type: 'default', rope_theta: 1e6 } },
    });
    writeTinyModel(path.join(dir, 'strong'), {
      extraConfig: { rope_parameters: { rope_theta: 1e6, rope_type: 'default' }, sliding_window: null },
    });
    await fuseModelDirs(path.join(dir, 'weak'), path.join(dir, 'strong'), path.join(dir, 'out'), 0.5);
  });

  it('runs as steps 4 and 5a under the artifact store', async () => {
    const runDir = tmpDir();
    writeTinyModel(path.join(runDir, 'base'));
    writeTinyModel(path.join(runDir, 'stage1_m1/checkpoint-3'), { shift: 7 });
    const snapshot = await snapshotBase(stepInput('snapshot', runDir));
    expect(snapshot.outputs).toEqual({ model: A.STAGE0_DIR });
    expect(readdirSync(path.join(runDir, A.STAGE0_DIR)).sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    expect((await snapshotBase(stepInput('snapshot', runDir))).cached).toBe(true);
    const sft: StepResult = {
      stepId: 'sft',
      host: 'h',
      cached: false,
      outputs: { checkpoint: 'stage1_m1/checkpoint-3' },
      metrics: {},
      cacheKey: 'k',
      durationMs: 1,
    };
    const fused = await fuseModels(stepInput('fuse', runDir, {}, { snapshot, sft }));
    expect(fused.outputs).toEqual({ fused: A.FUSED_INIT_DIR });
    expect(existsSync(path.join(runDir, A.FUSED_INIT_DIR, 'model.safetensors'))).toBe(true);
  });
});

describe('snapshot', () => {
  it('refuses a dir that is not a model', async () => {
    const dir = tmpDir();
    const f = await failureOf(snapshotModelDir(dir, path.join(dir, 'out')));
    expect(f.type).toBe(ErrorTypes.InvalidInput);
    expect(f.message).toMatch(/config.json/);
  });
});

describe('extract', () => {
  function writeFused(dir: string) {
    const sub = (i: number) => ({
      model_type: 'qwen3',
      architectures: ['Qwen3ForCausalLM'],
      hidden_size: 2,
      bos_token_id: 1,
      eos_token_id: 2 + i,
      num_sub_models: 9,
    });
    writeSafetensorsFixture(path.join(dir, 'model.safetensors'), {
      'sub_models.0.model.norm.weight': { dtype: 'BF16', shape: [2], data: bf16([1, 2]) },
      'sub_models.1.model.norm.weight': { dtype: 'BF16', shape: [2], data: bf16([3, -0.5]) },
      'sub_models.1.lm_head.weight': { dtype: 'BF16', shape: [2, 2], data: bf16([1.5, 2.25, -3, 0.125]) },
      'sub_models.1.prev_gate.weight': { dtype: 'BF16', shape: [1], data: bf16([9]) },
      'sub_models.1.model.layers.0.step': { dtype: 'I64', shape: [1], data: Buffer.alloc(8, 1) },
    });
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        ...sub(0),
        num_sub_models: 2,
        architectures: ['QwenBoostForCausalLM'],
        is_llmboost: false,
        fusion_lambda: 0.5,
        sub_model_cfgs: [sub(0), sub(1)],
      }),
    );
    writeFileSync(path.join(dir, 'tokenizer.json'), '{}');
    writeFileSync(path.join(dir, 'trainer_state.json'), '{}');
  }

  it('keeps sub_models.1, strips the prefix, skips prev_, casts bf16 → f32 exactly', async () => {
    const dir = tmpDir();
    writeFused(path.join(dir, 'ckpt'));
    const out = path.join(dir, 'out');
    const metrics = await extractSubmodelDir(path.join(dir, 'ckpt'), out, 1, 'float32');
    expect(metrics).toMatchObject({ tensors: 3, skippedPrev: 1 });
    const h = await readSafetensorsHeader(path.join(out, 'model.safetensors'));
    expect([...h.tensors.keys()]).toEqual(['model.norm.weight', 'lm_head.weight', 'model.layers.0.step']);
    const get = await tensorBytes(path.join(out, 'model.safetensors'));
    expect(get('lm_head.weight').info).toMatchObject({ dtype: 'F32', shape: [2, 2] });
    expect(readF32(get('lm_head.weight').data)).toEqual([1.5, 2.25, -3, 0.125]);
    expect(readF32(get('model.norm.weight').data)).toEqual([3, -0.5]);
    expect(get('model.layers.0.step').info.dtype).toBe('I64'); // integers are not cast

    const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(config).toEqual({
      model_type: 'qwen3',
      architectures: ['Qwen3ForCausalLM'],
      hidden_size: 2,
      bos_token_id: 1,
      eos_token_id: 3,
      torch_dtype: 'float32',
    });
    expect(JSON.parse(readFileSync(path.join(out, 'generation_config.json'), 'utf8'))).toEqual({
      bos_token_id: 1,
      eos_token_id: 3,
    });
    expect(readdirSync(out).sort()).toEqual([
      'config.json',
      'generation_config.json',
      'model.safetensors',
      'tokenizer.json',
    ]);
  });

  it('keep: bytes unchanged; idx 0 takes the other branch; a missing branch config is an error', async () => {
    const dir = tmpDir();
    writeFused(path.join(dir, 'ckpt'));
    await extractSubmodelDir(path.join(dir, 'ckpt'), path.join(dir, 'm0'), 0, 'keep');
    const get = await tensorBytes(path.join(dir, 'm0', 'model.safetensors'));
    expect(get('model.norm.weight').data).toEqual(bf16([1, 2]));
    const f = await failureOf(extractSubmodelDir(path.join(dir, 'ckpt'), path.join(dir, 'm5'), 5, 'keep'));
    expect(f.details[0]).toMatchObject({ field: 'sub_model_cfgs' });
  });
});
