/**
 * Config → kernel job: the jobs a config builds pass their schemas, the job schemas' defaults are
 * the config's, λ reaches joint training only through the fused checkpoint, and the step
 * definitions stay loadable in the workflow sandbox.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { resolveEvalSets } from '../../activities/evalDatasets';
import { RunConfig } from '../../pipeline/config';
import { KERNEL_JOBS } from '../../pipeline/kernelJobs';
import { entropyJob } from '../../pipeline/stepDefinitions/entropy';
import { evaluateJob } from '../../pipeline/stepDefinitions/evaluate';
import { jointJob } from '../../pipeline/stepDefinitions/joint';
import { sftJob } from '../../pipeline/stepDefinitions/sft';

const config = RunConfig.parse({ runName: 'r', runDir: '/r', baseModel: '/b', dataFile: '/d' });
const log = { log_file: '/r/logs/x.log' };
const jobs = {
  sft: sftJob(config, config.sft, { modelPath: '/b', dataFile: '/d', outputDir: '/r/stage1' }),
  joint: jointJob(config, config.joint, {
    fusedDir: '/r/fused',
    indicesFile: '/r/positions.txt',
    dataFile: '/d',
    outputDir: '/r/stage3',
  }),
  entropy: entropyJob(config, { modelPath: '/b', dataFile: '/d', outputPath: '/r/e.jsonl', field: 'entropy_0' }),
  evaluate: evaluateJob(config.eval, resolveEvalSets(config.eval), {
    path: '/m',
    label: 'wmss',
    outputDir: '/r/results/wmss',
  }),
};

test.each(Object.entries(jobs))(
  'the %s job of a default config passes its schema and carries the config values',
  (verb, job) => {
    const parsed = KERNEL_JOBS[verb as keyof typeof jobs].parse({ ...log, ...job });
    expect(parsed).toMatchObject(job);
  },
);

test('every key of the training sections reaches the job, under its snake_case name', () => {
  const sft = RunConfig.parse({
    ...config,
    sft: {
      lr: 0.002,
      gradAccum: 6,
      maxSteps: 7,
      compileLayers: false,
      systemPrompt: 'S',
      parallelism: { strategy: 'fsdp', cpuOffload: true },
    },
  }).sft;
  const job = sftJob(config, sft, { modelPath: '/b', dataFile: '/d', outputDir: '/o' });
  expect(job).toMatchObject({
    lr: 0.002,
    grad_accum: 6,
    max_steps: 7,
    compile_layers: false,
    system_prompt: 'S',
    parallelism: 'fsdp',
    cpu_offload: true,
    reshard_after_forward: true,
    data_format: 'messages',
  });
  expect(job).not.toHaveProperty('keep_checkpoints');
});

test('the job schemas default every config-built field to the config default (gradAccum 256, saveEvery 50, gradientCheckpointing on, parallelism auto)', () => {
  const minimal = KERNEL_JOBS.sft.parse({ ...log, data_file: '/d', output_dir: '/o', model_path: '/b' });
  expect(minimal).toMatchObject({
    grad_accum: config.sft.gradAccum,
    save_every: config.sft.saveEvery,
    gradient_checkpointing: config.sft.gradientCheckpointing,
    parallelism: config.sft.parallelism.strategy,
    max_length: config.sft.maxLength,
    lr: config.sft.lr,
    seed: config.sft.seed,
  });
  expect([minimal.grad_accum, minimal.save_every, minimal.gradient_checkpointing, minimal.parallelism]).toEqual([
    256,
    50,
    true,
    'auto',
  ]);
  const entropy = KERNEL_JOBS.entropy.parse({
    ...log,
    model_path: '/b',
    data_file: '/d',
    output_path: '/o',
    field: 'entropy_1',
  });
  expect(entropy).toMatchObject({
    max_length: config.entropy.maxLength,
    batch_tokens: config.entropy.batchTokens,
    vocab_chunk: config.entropy.vocabChunk,
    definition: config.entropy.definition,
    data_format: config.dataFormat,
  });
});

test('the eval section reaches the evaluate job: protocol, sampling (n as n_samples, its seed as the job seed), each resolved set with its digest', () => {
  const e = RunConfig.parse({
    ...config,
    eval: {
      protocol: 'lenient',
      systemPrompt: 'S',
      sampling: { temperature: 0.6, topP: 0.95, n: 4, seed: 7 },
      benchmarks: ['aqua', { name: 'mine', path: '/m.jsonl', limit: 3, allowRowCountMismatch: true }],
      overwrite: true,
    },
  }).eval;
  const job = evaluateJob(e, resolveEvalSets(e), { path: '/m', label: 'm1', outputDir: '/o' });
  expect(job).toMatchObject({
    protocol: 'lenient',
    system_prompt: 'S',
    enable_thinking: true,
    temperature: 0.6,
    top_p: 0.95,
    n_samples: 4,
    seed: 7,
    batch_size: 16,
  });
  expect(job).not.toHaveProperty('overwrite');
  expect(job.datasets[0]).toMatchObject({
    name: 'aqua',
    format: 'json',
    expected_rows: 254,
    max_new_tokens: 4096,
    sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
  });
  expect(job.datasets[1]).toEqual({
    name: 'mine',
    path: '/m.jsonl',
    format: 'jsonl',
    expected_rows: null,
    max_input_tokens: 4096,
    max_new_tokens: 4096,
    limit: 3,
    sha256: null,
  });
  expect(KERNEL_JOBS.evaluate.parse({ ...log, ...job })).toMatchObject({ overwrite: false, n_samples: 4 });
  const minimal = KERNEL_JOBS.evaluate.parse({
    ...log,
    model_path: '/m',
    label: 'x',
    output_dir: '/o',
    datasets: [{ name: 'd', path: '/d.json', format: 'json' }],
  });
  expect(minimal).toMatchObject({
    protocol: 'paper',
    temperature: 0,
    top_p: 1,
    n_samples: 1,
    seed: 42,
    enable_thinking: true,
    batch_size: 16,
  });
  expect(minimal.datasets[0]).toMatchObject({ max_input_tokens: 4096, max_new_tokens: 4096 });
});

test('λ travels one way: written into the fused checkpoint at 5a, not sent in the joint job', () => {
  expect(jobs.joint).not.toHaveProperty('fusion_lambda');
  expect(KERNEL_JOBS.joint.safeParse({ ...log, ...jobs.joint, fusion_lambda: 1.5 }).success).toBe(false);
});

test('step definitions load in the workflow sandbox: no Node built-ins, activity code as types only', () => {
  const root = path.join(__dirname, '../..');
  const sandboxSafe = (readdirSync(path.join(root, 'pipeline'), { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts'))
    .map((f) => path.join('pipeline', f));
  expect(sandboxSafe.length).toBeGreaterThan(12);
  for (const file of sandboxSafe) {
    const imports = [
      ...readFileSync(path.join(root, file), 'utf8').matchAll(/^import (type )?[^;]*? from '([^']+)';/gm),
    ].map((m) => ({ type: Boolean(m[1]), from: m[2] }));
    const bad = imports.filter(
      (i) =>
        i.from.startsWith('node:') ||
        /^(fs|path|os|child_process|crypto)$/.test(i.from) ||
        (!i.type && /activities|workers|client/.test(i.from)),
    );
    expect([file, bad]).toEqual([file, []]);
  }
});
