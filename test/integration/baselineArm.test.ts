/**
 * Step 5c with `baseline.data: original`: m1 trained on the data file itself, every record once in
 * file order before the kernel's shuffle, for exactly the optimizer steps step 5b computes from its
 * resample (no maxSteps given), with 5b's global batch. (The default, the resampled set, is
 * checked step for step and token for token in pipeline.test.ts.)
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { startPipeline } from '../../client/commands/start';
import { startHarness, tinyRunConfig, type Harness } from '../../testkit/harness';

jest.setTimeout(600_000);

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
}, 300_000);

afterAll(async () => {
  await h?.stop();
});

test('baseline.data original: the data file once over, for the steps 5b computes from its resample', async () => {
  const tiny = tinyRunConfig(h.assets, path.join(h.dir, 'run'), 'it-baseline-original');
  // 5b's step count from the resample: floor(records × epochs / global batch), not maxSteps
  const { maxSteps: _none, ...joint } = { ...tiny.joint, microBatch: 32, gradAccum: 4, epochs: 0.5 };
  const config = {
    ...tiny,
    joint,
    baseline: { sft: true, data: 'original' as const },
    eval: { ...tiny.eval, baselines: false },
  };
  const result = (await (await startPipeline(h.client, config)).result()) as PipelineResult;
  const run = (rel: string) => path.join(config.runDir, rel);
  const records = readFileSync(config.dataFile, 'utf8').split('\n').filter(Boolean).length;
  const resampled = readFileSync(run(A.RESAMPLED_POSITIONS), 'utf8').split('\n').filter(Boolean).length;
  const expected = Math.floor((resampled * 0.5) / 128);
  expect(expected).toBeGreaterThan(1);

  const metricsOf = (id: string) => JSON.parse(readFileSync(run(A.manifestPath(id)), 'utf8')).result.metrics;
  expect(metricsOf('joint').steps).toBe(expected);
  expect(metricsOf('continuedSft').steps).toBe(expected);
  expect(metricsOf('continuedSft').global_batch).toBe(128);
  expect(metricsOf('continuedSft').train_samples).toBe(records);
  const positions = readFileSync(run(`${A.CONTINUED_SFT_DIR}/original_positions.txt`), 'utf8').split('\n');
  expect(positions.filter(Boolean).map(Number)).toEqual([...Array(records).keys()]);
  expect(result.steps.continuedSft.outputs.checkpoint).toBe(`${A.CONTINUED_SFT_DIR}/checkpoint-${expected}`);
  expect(Object.keys(result.accuracy).sort()).toEqual(['continued_sft', 'wmss']);
});
