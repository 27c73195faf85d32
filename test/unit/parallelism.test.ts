/** The memory estimate behind parallelism.strategy auto, and the parallelism config's refusals. */
import { formatConfigIssues, RunConfig } from '../../pipeline/config';
import { autoStrategy, trainingMemory } from '../../pipeline/parallelism';

const base = { runName: 'r', runDir: '/tmp/r', baseModel: '/m', dataFile: '/d.jsonl' };
// Qwen3-8B shape, fused weak+strong (2 × 8.19 B parameters), bf16
const joint8b = {
  params: 2 * 8.19e9,
  trainableParams: 2 * 8.19e9,
  bytesPerParam: 2,
  microBatch: 8,
  maxLength: 1024,
  hiddenSize: 4096,
  layers: 36,
  branches: 2,
  gradientCheckpointing: true,
  devices: 2,
};

test('weights, gradients and both AdamW moments in the parameter dtype; FSDP divides them by the GPUs', () => {
  const e = trainingMemory(joint8b);
  expect(e.weightsGiB).toBeCloseTo((16.38e9 * 2) / 2 ** 30, 6);
  expect(e.gradientsGiB).toBeCloseTo(e.weightsGiB, 6);
  expect(e.optimizerGiB).toBeCloseTo(2 * e.weightsGiB, 6);
  const states = e.weightsGiB + e.gradientsGiB + e.optimizerGiB;
  expect(e.ddpGiB).toBeCloseTo(states + e.activationsGiB, 6);
  expect(e.fsdpGiB).toBeCloseTo(states / 2 + e.activationsGiB, 6);
  // a frozen weak branch has neither gradients nor moments
  const frozen = trainingMemory({ ...joint8b, trainableParams: 8.19e9 });
  expect(frozen.gradientsGiB).toBeCloseTo(e.gradientsGiB / 2, 6);
  expect(frozen.optimizerGiB).toBeCloseTo(e.optimizerGiB / 2, 6);
  // recomputation keeps far fewer activations
  expect(trainingMemory({ ...joint8b, gradientCheckpointing: false }).activationsGiB).toBeGreaterThan(
    5 * e.activationsGiB,
  );
});

test('auto: FSDP when the DDP footprint exceeds 85 % of a GPU, DDP when it fits, nothing to choose on one device', () => {
  const big = trainingMemory(joint8b); // ≈ 122 GiB of states alone: not on a 141 GB H200
  expect(autoStrategy(big, 2, 139.8)).toBe('fsdp');
  const small = trainingMemory({
    ...joint8b,
    params: 0.6e9,
    trainableParams: 0.6e9,
    hiddenSize: 1024,
    layers: 28,
    branches: 1,
  });
  expect(autoStrategy(small, 2, 139.8)).toBe('ddp');
  expect(autoStrategy(big, 1, 139.8)).toBe('single');
});

test('parallelism config: defaults, an unknown strategy and cpuOffload under ddp are refused with the field named', () => {
  expect(RunConfig.parse(base).joint.parallelism).toEqual({
    strategy: 'auto',
    reshardAfterForward: true,
    cpuOffload: false,
    asyncCheckpoints: true,
  });
  const unknown = RunConfig.safeParse({ ...base, sft: { parallelism: { strategy: 'zero3' } } });
  expect(unknown.success).toBe(false);
  expect(formatConfigIssues(unknown.error!)).toMatch(/^sft\.parallelism\.strategy: /m);
  const offload = RunConfig.safeParse({ ...base, joint: { parallelism: { strategy: 'ddp', cpuOffload: true } } });
  expect(offload.success).toBe(false);
  expect(formatConfigIssues(offload.error!)).toMatch(
    /^joint\.parallelism\.cpuOffload: cpuOffload needs strategy fsdp/m,
  );
});
