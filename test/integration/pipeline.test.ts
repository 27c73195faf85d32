/**
 * The whole pipeline, steps 0–7, on a real dev server with real workers and real kernels on the
 * tiny model, named by a Hugging Face id (a cache built here, resolved offline) and tracked in
 * MLflow (a local file store) and TensorBoard; then the same JSON through `temporal workflow
 * start`, which must be all cache hits.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import { activeSteps } from '../../pipeline/steps';
import type { RunConfig } from '../../pipeline/config';
import { BENCHMARK_NAMES } from '../../pipeline/stepDefinitions/evaluate';
import { CONTINUED_SFT_LABEL } from '../../pipeline/stepDefinitions/continuedSft';
import { workflowIdFor, type PipelineResult } from '../../pipeline/workflowApi';
import { startPipeline } from '../../client/commands/start';
import { configToResume } from '../../client/commands/resume';
import { temporalCli } from '../../client/devServer';
import { readModelTensors } from '../../activities/store/safetensors';
import { VENV_BIN } from '../../activities/repoPaths';
import { startHarness, tinyRunConfig, type Harness } from '../../testkit/harness';
import { registerInHubCache } from '../../client/hubCache';
import { readManifest } from '../../activities/store/manifest';

const MODEL_ID = 'wmss-it/tiny';
let commit: string;

jest.setTimeout(900_000);

let h: Harness;
let config: RunConfig;
let first: PipelineResult;

beforeAll(async () => {
  h = await startHarness();
  const tiny = tinyRunConfig(h.assets, path.join(h.dir, 'run'), 'it-full');
  // the workers resolve MODEL_ID in this cache, offline (kernels and the set-up inherit the env)
  const hubCache = path.join(h.dir, 'hf-cache');
  commit = registerInHubCache(tiny.baseModel, MODEL_ID, hubCache);
  Object.assign(process.env, { HF_HUB_CACHE: hubCache, HF_HUB_OFFLINE: '1' });
  // the paper protocol end to end: the seven bundled sets too, two rows each with a short budget
  config = {
    ...tiny,
    // the baseline arm too (step 5c): its cost is asserted against 5b's from the manifests
    baseline: { sft: true, data: 'resampled' },
    baseModel: MODEL_ID,
    tracking: { tensorboard: true, mlflow: { trackingUri: `file:${path.join(h.dir, 'mlruns')}`, experiment: 'it' } },
    eval: {
      ...tiny.eval,
      benchmarks: [...tiny.eval.benchmarks, ...BENCHMARK_NAMES.map((name) => ({ name, limit: 2, maxNewTokens: 8 }))],
    },
  };
}, 300_000);

afterAll(async () => {
  await h?.stop();
});

const jsonl = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);

test('steps 0–7 complete and every artifact has the format of the spec', async () => {
  const handle = await startPipeline(h.client, config);
  first = (await handle.result()) as PipelineResult;
  const run = (rel: string) => path.join(config.runDir, rel);
  const n = lines(config.dataFile).length;

  for (const [file, field] of [
    [A.ENTROPY_0, 'entropy_0'],
    [A.ENTROPY_1, 'entropy_1'],
  ] as const) {
    const rows = jsonl(run(file));
    expect(rows).toHaveLength(n);
    rows.forEach((row, i) => {
      expect(Object.keys(row).sort()).toEqual(['idx', field].sort());
      expect(row.idx).toBe(i); // sorted by idx; the tiny data's idx are 0..N-1
      expect(Number.isFinite(row[field])).toBe(true);
      expect(row[field] as number).toBeGreaterThanOrEqual(0);
    });
  }
  const merged = jsonl(run(A.ENTROPY_MERGED));
  expect(merged).toHaveLength(n);
  expect(Object.keys(merged[0]).sort()).toEqual(['entropy_0', 'entropy_1', 'idx']);
  const positions = lines(run(A.RESAMPLED_POSITIONS)).map(Number);
  expect(positions).toHaveLength(n); // multiplier 1, duplicates kept (the original's resampling)
  positions.forEach((p) => expect(p >= 0 && p < n && Number.isInteger(p)).toBe(true));

  // m1 entropy should fall after SFT on the task: the premise of the weighting.
  const mean = (field: string) => merged.reduce((s, r) => s + (r[field] as number), 0) / n;
  expect(mean('entropy_1')).toBeLessThan(mean('entropy_0'));

  const sftCheckpoint = first.steps.sft.outputs.checkpoint;
  expect(sftCheckpoint).toBe(`${A.STAGE1_DIR}/checkpoint-6`);
  expect(existsSync(run(`${sftCheckpoint}/COMPLETE`))).toBe(true);
  expect(existsSync(run(`${A.STAGE0_DIR}/config.json`))).toBe(true);

  const fusedConfig = JSON.parse(readFileSync(run(`${A.FUSED_INIT_DIR}/config.json`), 'utf8'));
  expect(fusedConfig.sub_model_cfgs).toHaveLength(2);
  expect(fusedConfig.fusion_lambda).toBe(0.5);
  expect(fusedConfig.architectures).toEqual(['QwenBoostForCausalLM']);
  const fusedKeys = (await readModelTensors(run(A.FUSED_INIT_DIR))).map((t) => t.name);
  expect(fusedKeys.every((k) => k.startsWith('sub_models.0.') || k.startsWith('sub_models.1.'))).toBe(true);
  expect(fusedKeys).toContain('sub_models.1.lm_head.weight');

  const jointCheckpoint = first.steps.joint.outputs.checkpoint;
  expect(jointCheckpoint).toBe(`${A.stage3Dir(config)}/checkpoint-6`);
  const extracted = run(A.extractedDir(config));
  const extractedTensors = await readModelTensors(extracted);
  const trained = (await readModelTensors(run(jointCheckpoint))).filter((t) => t.name.startsWith('sub_models.1.'));
  expect(extractedTensors.map((t) => t.name).sort()).toEqual(
    trained.map((t) => t.name.slice('sub_models.1.'.length)).sort(),
  );
  expect(JSON.parse(readFileSync(path.join(extracted, 'config.json'), 'utf8')).architectures).toEqual([
    'Qwen3ForCausalLM',
  ]);
  // The extracted model is a plain HF model: transformers loads it and its weights are the strong branch's.
  const check = execFileSync(
    path.join(VENV_BIN, 'python'),
    [
      '-c',
      [
        'import sys, torch; from transformers import AutoModelForCausalLM; from safetensors.torch import load_file',
        'm = AutoModelForCausalLM.from_pretrained(sys.argv[1])',
        'fused = load_file(sys.argv[2] + "/model.safetensors")',
        'w = fused["sub_models.1.model.layers.0.mlp.up_proj.weight"]',
        'print(torch.equal(m.model.layers[0].mlp.up_proj.weight.to(w.dtype), w))',
      ].join('\n'),
      extracted,
      run(jointCheckpoint),
    ],
    { encoding: 'utf8' },
  );
  expect(check.trim().split('\n').pop()).toBe('True');

  // Step 5c trained m1 with exactly the optimizer steps and tokens of 5b's strong branch (the
  // fused model's two branches see every token of every step), as both manifests record them.
  const costOf = (id: string) => {
    const manifest = JSON.parse(readFileSync(run(A.manifestPath(id)), 'utf8'));
    const m = manifest.result.metrics;
    return { steps: m.steps, trainedTokens: m.trained_tokens, targetTokens: m.target_tokens, samples: m.train_samples };
  };
  const jointCost = costOf('joint');
  expect(jointCost.steps).toBe(6);
  expect(jointCost.trainedTokens).toBeGreaterThan(0);
  expect(costOf('continuedSft')).toEqual(jointCost);
  expect(first.steps.continuedSft.outputs.checkpoint).toBe(`${A.CONTINUED_SFT_DIR}/checkpoint-6`);

  for (const label of ['wmss', 'base', 'm1', CONTINUED_SFT_LABEL]) {
    const summary = JSON.parse(readFileSync(run(`${A.RESULTS_DIR}/${label}/summary.json`), 'utf8'));
    expect(summary.protocol).toBe('paper');
    expect(summary.datasets.arithmetic.n).toBe(24);
    expect(first.accuracy[label].arithmetic).toBeGreaterThanOrEqual(0);
    for (const name of ['arithmetic', ...BENCHMARK_NAMES]) {
      const set = JSON.parse(readFileSync(run(`${A.RESULTS_DIR}/${label}/${name}/eval_summary.json`), 'utf8'));
      expect(set).toMatchObject({
        protocol: 'paper',
        n_prompts: name === 'arithmetic' ? 24 : 2,
        n_samples: 1,
        seed: 42,
        prompt: { thinking: true },
      });
      expect(set.truncation_rate).toBeGreaterThanOrEqual(0);
      expect(readFileSync(run(`${A.RESULTS_DIR}/${label}/${name}/eval_detail.csv`), 'utf8').split(/\r?\n/)[0]).toBe(
        'id,orig_id,position,sample_index,question,ground_truth,response,token_ids,output_tokens,finish_reason,stop_reason,normal_stop,truncated,verified,correct,grader_error,prompt_tokens,latency_s_per_prompt',
      );
      expect(first.accuracy[label][name]).toBe(set.pass_at_1);
    }
  }
  for (const step of activeSteps(config)) {
    expect(existsSync(run(A.manifestPath(step.id)))).toBe(true);
    expect(first.steps[step.id].cached).toBe(false);
  }
  await checkModelIdAndTrackers(run);
});

/** The id's commit in the cache keys, the TensorBoard event files, the MLflow run, the memo. */
async function checkModelIdAndTrackers(run: (rel: string) => string) {
  for (const id of ['entropy0', 'sft', 'snapshot'] as const)
    expect(JSON.stringify((await readManifest(config.runDir, id))!.keyMaterial)).toContain(`hf:${MODEL_ID}@${commit}:`);
  for (const dir of ['sft', 'joint', 'entropy0', 'entropy1', 'evaluate/wmss', 'evaluate/base'])
    expect(readdirSync(run(`tensorboard/${dir}`)).some((f) => f.startsWith('events.out.tfevents.'))).toBe(true);
  const { run_id: runId, experiment_id: expId, url } = JSON.parse(readFileSync(run('tracking/mlflow.json'), 'utf8'));
  const mlrun = path.join(h.dir, 'mlruns', expId, runId);
  expect(readFileSync(path.join(mlrun, 'params', 'baseModel'), 'utf8')).toBe(MODEL_ID);
  expect(readFileSync(path.join(mlrun, 'params', 'sft.maxSteps'), 'utf8')).toBe(String(config.sft.maxSteps));
  // file store: one "timestamp value step" line per logged value
  const steps = (key: string) => lines(path.join(mlrun, 'metrics', key)).map((l) => Number(l.split(' ')[2]));
  expect(steps('sft/loss')).toEqual([1, 2, 3, 4, 5, 6]);
  expect(steps('joint/loss')).toEqual([1, 2, 3, 4, 5, 6]);
  expect(lines(path.join(mlrun, 'metrics', 'evaluate', 'wmss', 'pass_at_1', 'arithmetic'))).toHaveLength(1);
  const memo = (await h.client.workflow.getHandle(workflowIdFor(config.runName)).describe()).memo;
  expect(memo?.tracking).toEqual({ mlflow: url });
  expect(url).toBe(`file:${path.join(h.dir, 'mlruns')}/${expId}/${runId}`);
}

test('the same JSON started with `temporal workflow start` completes from cache', async () => {
  expect(first).toBeDefined();
  const file = path.join(h.dir, 'run.json');
  writeFileSync(file, JSON.stringify(config));
  execFileSync(
    temporalCli(),
    [
      'workflow',
      'start',
      '--type',
      'wmssPipeline',
      '--task-queue',
      'wmss',
      '--workflow-id',
      'it-cli',
      '--input-file',
      file,
      '--address',
      h.server.address,
    ],
    { encoding: 'utf8' },
  );
  const result = (await h.client.workflow.getHandle('it-cli').result()) as PipelineResult;
  for (const step of activeSteps(config)) {
    expect(result.steps[step.id].cached).toBe(true);
    expect(result.steps[step.id].cacheKey).toBe(first.steps[step.id].cacheKey);
  }
  expect(result.accuracy).toEqual(first.accuracy);
});

test("`wmss resume` recovers the config from the run dir and from the run's history", async () => {
  expect(first).toBeDefined();
  await expect(configToResume(h.client, config.runDir)).resolves.toEqual(config);
  await expect(configToResume(h.client, config.runName)).resolves.toEqual(config);
  await expect(configToResume(h.client, path.join(h.dir, 'nowhere'))).rejects.toThrow();
});
