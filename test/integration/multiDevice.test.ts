/**
 * A worker owning two devices, through the activity path on the CPU: the device set says "two
 * GPUs", the run config says device cpu, so the shards and torchrun ranks run on the CPU (gloo)
 * exactly as they would on two GPUs. Entropy on 2 shards must equal entropy on one process;
 * sft must run as 2 torchrun ranks with the configured global batch.
 */
import { readFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeTinyAssets } from '../../client/commands/demo';
import { kernelSteps } from '../../activities/kernelSteps';
import { pythonExecutable } from '../../activities/kernelBridge';
import { acquireKernelForkServer } from '../../activities/kernelForkServer';
import { withResolvedPaths } from '../../activities/runPaths';
import { createExclusive } from '../../workers/createWorkers';
import type { DeviceSet } from '../../activities/deviceSet';
import type { RunConfig } from '../../pipeline/config';
import { ASSETS_DIR, tinyRunConfig } from '../../testkit/harness';

jest.setTimeout(600_000);

const steps = (devices: DeviceSet) =>
  withResolvedPaths(kernelSteps({ devices, exclusive: createExclusive(), threads: 1 }));
const twoGpus: DeviceSet = { kind: 'cuda', ids: [0, 1] };
let dir: string;
let releaseForkServer: () => void;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-md-'));
  // the kernel fork server such a worker has (workers/createWorkers.ts): the shards are forked
  // from it, each with its own CUDA_VISIBLE_DEVICES; torchrun's ranks start plainly
  releaseForkServer = acquireKernelForkServer(pythonExecutable());
  await makeTinyAssets(ASSETS_DIR, () => undefined);
}, 300_000);

afterAll(() => releaseForkServer());

const config = (name: string, overrides: Partial<RunConfig> = {}) =>
  tinyRunConfig(ASSETS_DIR, path.join(dir, name), name, overrides);
const rows = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { idx: number; entropy_0: number });

test('entropy on two devices (two shards, merged in idx order) equals entropy on one', async () => {
  const one = await steps({ kind: 'cpu' }).computeEntropy({ stepId: 'entropy0', config: config('one'), deps: {} });
  const two = await steps(twoGpus).computeEntropy({ stepId: 'entropy0', config: config('two'), deps: {} });
  const a = rows(path.join(dir, 'one', one.outputs.entropy));
  const b = rows(path.join(dir, 'two', two.outputs.entropy));
  expect(b.map((r) => r.idx)).toEqual(a.map((r) => r.idx));
  b.forEach((r, i) => expect(r.entropy_0).toBeCloseTo(a[i].entropy_0, 5));
  expect(two.metrics).toMatchObject({ shards: 2, samples: one.metrics.samples, tokens: one.metrics.tokens });
  expect(two.metrics.mean_entropy as number).toBeCloseTo(one.metrics.mean_entropy as number, 5);
});

test('sft on two devices runs two torchrun ranks with the configured global batch', async () => {
  const training = {
    lr: 3e-3,
    microBatch: 8,
    gradAccum: 2,
    maxLength: 96,
    maxSteps: 2,
    saveEvery: 0,
    gradientCheckpointing: false,
  };
  const result = await steps(twoGpus).trainSft({
    stepId: 'sft',
    config: config('ddp', { sft: training } as never),
    deps: {},
  });
  expect(result.metrics).toMatchObject({
    steps: 2,
    world_size: 2,
    micro_batch: 8,
    grad_accum_per_rank: 1,
    global_batch: 16,
  });
  expect(result.outputs.checkpoint).toBe('stage1_m1/checkpoint-2');
  expect(readFileSync(path.join(dir, 'ddp', 'logs', 'sft.log'), 'utf8')).toMatch(/rank 1 of 2/);

  const odd = steps({ kind: 'cuda', ids: [0, 1, 2] }).trainSft({
    stepId: 'sft',
    config: config('odd', { sft: training } as never),
    deps: {},
  });
  await expect(odd).rejects.toMatchObject({
    type: 'InvalidInput',
    nonRetryable: true,
    message: expect.stringMatching(/gradAccum 2 cannot be split over the 3 GPUs/),
  });
});

test('evaluate on two devices (two shards, merged by the kernel) writes what one device writes', async () => {
  const evalConfig = (name: string) => {
    const c = config(name);
    return {
      ...c,
      eval: {
        ...c.eval,
        baselines: false,
        benchmarks: [
          { ...c.eval.benchmarks[0], limit: 5 },
          { name: 'aqua', limit: 3, maxNewTokens: 6 },
        ],
      },
    } as RunConfig;
  };
  const extract = (name: string) =>
    ({
      extract: {
        stepId: 'extract',
        host: 'h',
        cached: false,
        cacheKey: 'k',
        durationMs: 0,
        metrics: {},
        outputs: { model: path.relative(path.join(dir, name), path.join(ASSETS_DIR, 'tiny-qwen3')) },
      },
    }) as never;
  const one = await steps({ kind: 'cpu' }).evaluate({
    stepId: 'evaluate',
    config: evalConfig('eval-one'),
    deps: extract('eval-one'),
  });
  const two = await steps(twoGpus).evaluate({
    stepId: 'evaluate',
    config: evalConfig('eval-two'),
    deps: extract('eval-two'),
  });
  expect(two.metrics).toMatchObject({ 'shards/wmss': 2 });
  for (const set of ['arithmetic', 'aqua']) {
    expect(two.metrics[`pass_at_1/wmss/${set}`]).toBe(one.metrics[`pass_at_1/wmss/${set}`]);
    // the rows without their timing column
    const detail = (name: string) =>
      readFileSync(path.join(dir, name, 'results', 'wmss', set, 'eval_detail.csv'), 'utf8')
        .split(/\r?\n/)
        .map((l) => l.replace(/,[\d.e-]+$/, ''));
    expect(detail('eval-two')).toEqual(detail('eval-one'));
    const summary = JSON.parse(
      readFileSync(path.join(dir, 'eval-two', 'results', 'wmss', set, 'eval_summary.json'), 'utf8'),
    );
    expect(summary).toMatchObject({ protocol: 'paper', n_prompts: set === 'aqua' ? 3 : 5, runtime: { shards: 2 } });
  }
});
