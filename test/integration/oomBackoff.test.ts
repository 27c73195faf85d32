/**
 * Out of memory in training: the failed attempt records a halving, the retry runs with half the
 * micro-batch and twice the accumulation (same global batch) and the step's manifest says so.
 * Calls the real activity and kernel directly, without a server: the retry is what Temporal does.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { kernelSteps } from '../../activities/kernelSteps';
import { oomFile } from '../../activities/oomBackoff';
import { makeTinyAssets } from '../../client/commands/demo';
import { createExclusive } from '../../workers/createWorkers';
import { ErrorTypes } from '../../pipeline/errors';
import { manifestPath } from '../../pipeline/artifacts';
import { ASSETS_DIR, tinyRunConfig } from '../../testkit/harness';

jest.setTimeout(300_000);

test('an out-of-memory attempt is retried with half the micro-batch and the same global batch', async () => {
  await makeTinyAssets(ASSETS_DIR, () => undefined);
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'wmss-oom-'));
  const config = tinyRunConfig(ASSETS_DIR, runDir, 'it-oom');
  const steps = kernelSteps({ devices: { kind: 'cpu' }, exclusive: createExclusive(), threads: 1 });
  process.env.WMSS_FAULT_OOM = 'sft';
  try {
    const first = await steps.trainSft({ stepId: 'sft', config, deps: {} }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(first).toBeInstanceOf(ApplicationFailure);
    expect((first as ApplicationFailure).type).toBe(ErrorTypes.KernelOutOfMemory);
    expect((first as ApplicationFailure).nonRetryable).toBeFalsy();
    expect((first as ApplicationFailure).message).toMatch(/micro-batch 8 × gradAccum 4/);
    expect(existsSync(path.join(runDir, manifestPath('sft')))).toBe(false);

    const second = await steps.trainSft({ stepId: 'sft', config, deps: {} });
    expect(second.metrics).toMatchObject({
      micro_batch: 8,
      grad_accum_per_rank: 4,
      global_batch: 32,
      oom_halvings: 1,
      steps: 6,
    });
    const manifest = JSON.parse(readFileSync(path.join(runDir, manifestPath('sft')), 'utf8'));
    expect(JSON.stringify(manifest)).toMatch(/"oom_halvings":1/);
    expect(JSON.parse(readFileSync(oomFile(runDir, 'sft'), 'utf8')).halvings).toBe(1);
  } finally {
    delete process.env.WMSS_FAULT_OOM;
  }
});
