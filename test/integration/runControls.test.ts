/**
 * Run controls on a real dev server, real workers and kernels, the tiny model (docs/operating.md,
 * "Run controls"). One run, in order:
 *  - `rerun` of step 1 while it trains is refused with the reason; `rerun` of step 4 once it is done
 *    re-runs it (and later its successors) in the same workflow;
 *  - `wmss checkpoint` returns a complete checkpoint of the training step while it trains on;
 *  - `temporal activity pause` of step 1: the kernel saves and exits, `wmss status` says paused;
 *    unpause: the next attempt resumes from that checkpoint; the run completes;
 *  - `rerun` of step 3 after the run closed: 3, 5b, 6, 7 run again, every other step is a cache hit.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { temporalCli } from '../../client/devServer';
import { checkpointNow, rerun } from '../../client/commands/runControls';
import { renderSnapshot, snapshotRun } from '../../client/commands/status';
import { startPipeline } from '../../client/commands/start';
import { readManifest } from '../../activities/store/manifest';
import { recordedPids } from '../../activities/kernelLaunch';
import { completeCheckpoints } from '../../activities/store/diskSpace';
import * as A from '../../pipeline/artifacts';
import { RunConfig } from '../../pipeline/config';
import type { StepId } from '../../pipeline/steps';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { runCommand, startHarness, tinyRunConfig, until, type Harness } from '../../testkit/harness';

jest.setTimeout(900_000);

const SFT_STEPS = 500; // long enough on an idle machine for the checkpoint and the pause to find it training
let h: Harness;
let config: RunConfig;
let handle: WorkflowHandle;

beforeAll(async () => {
  process.env.WMSS_CONTROL_POLL_MS = '500'; // the activities of this process ask for requests often
  h = await startHarness();
  const base = tinyRunConfig(h.assets, path.join(h.dir, 'run'), 'it-controls');
  // step 1 long enough to be asked things while it trains; no scheduled checkpoint but the last
  config = RunConfig.parse({ ...base, sft: { ...base.sft, maxSteps: SFT_STEPS, saveEvery: 0 } });
  handle = await startPipeline(h.client, config);
}, 300_000);

afterAll(async () => {
  await h?.stop();
});

const stateOf = async (id: StepId) =>
  (await snapshotRun(h.client, handle.workflowId)).progress.steps.find((s) => s.id === id)!.state;
const sftDone = async () =>
  (await snapshotRun(h.client, handle.workflowId)).heartbeats.find((b) => b.stepId === 'sft')?.details?.done ?? 0;
const temporal = (...args: string[]) =>
  runCommand(temporalCli(), [
    ...args,
    '--address',
    h.server.address,
    '--workflow-id',
    handle.workflowId,
    '--activity-id',
    'sft',
  ]);

let rerunAt = 0;

test('rerun is refused while the step runs, and re-runs a finished step in the same workflow', async () => {
  // step 4 runs on the control worker beside step 1 (0 and 1 share the one GPU worker, in either order)
  await until(
    'step 4 done and step 1 training',
    async () => (await stateOf('snapshot')) === 'completed' && (await sftDone()) >= 1,
    300_000,
  );
  await expect(rerun(h.client, handle.workflowId, '1')).rejects.toThrow(/step 1 \(.*\) is running; wait until it ends/);
  rerunAt = Date.now();
  const reply = await rerun(h.client, handle.workflowId, '4');
  expect(reply.restarted).toBe(false);
  expect(reply.steps).toEqual(['snapshot', 'fuse', 'joint', 'extract', 'evaluate']);
  expect(reply.invalidated).toContain('.wmss/manifests/snapshot.wmss-step.json');
});

let requested = 0;

test('wmss checkpoint returns a complete checkpoint while step 1 trains on', async () => {
  const saved = await checkpointNow(h.client, handle.workflowId);
  expect(saved).toMatchObject({ stepId: 'sft', final: false });
  expect(saved.step).toBeGreaterThan(0);
  expect(saved.step).toBeLessThan(SFT_STEPS);
  expect(existsSync(path.join(saved.path, 'COMPLETE'))).toBe(true);
  expect(JSON.parse(readFileSync(path.join(saved.path, 'trainer_state.json'), 'utf8')).step).toBe(saved.step);
  requested = saved.step;
  await until('step 1 to train past the checkpoint', async () => (await sftDone()) > requested, 120_000);
});

let pausedAt = 0;

test('activity pause: the kernel saves and exits, status says paused; unpause resumes from that checkpoint', async () => {
  const paused = await temporal('activity', 'pause');
  expect(paused.code).toBe(0);
  await until('step 1 reported paused', async () => (await stateOf('sft')) === 'paused', 180_000);
  const snap = await snapshotRun(h.client, handle.workflowId);
  expect(renderSnapshot(snap)).toMatch(/Stage-1 SFT.*\bpaused\b/);
  expect(snap.progress.status).toBe('running'); // the run goes on: paused, not cancelled
  // the kernel saved where it was and is gone: no recorded process of any sft attempt is alive
  const stage1 = path.join(config.runDir, A.STAGE1_DIR);
  pausedAt = (await completeCheckpoints(stage1)).at(-1)!.step;
  expect(pausedAt).toBeGreaterThan(requested);
  const jobs = path.join(config.runDir, A.JOBS_DIR);
  for (const attempt of [1, 2, 3])
    expect(recordedPids(path.join(jobs, `sft.attempt-${attempt}.json.pids`))).toEqual([]);
  expect((await temporal('activity', 'unpause')).code).toBe(0);
});

let second: PipelineResult;

test('after unpause the run completes; step 1 resumed from the pause checkpoint; step 4 ran again', async () => {
  const result = (await handle.result()) as PipelineResult;
  expect(result.steps.sft.metrics.resumed_from_step).toBe(pausedAt);
  expect(result.steps.snapshot.cached).toBe(false);
  const m = await readManifest(config.runDir, 'snapshot');
  expect(Date.parse(m!.timings.startedAt)).toBeGreaterThan(rerunAt);
  second = result;
});

test('rerun of step 3 after the run closed: 3 and its successors run again, the rest are cache hits', async () => {
  expect(second).toBeDefined();
  const before = Object.fromEntries(
    await Promise.all(
      Object.keys(second.steps).map(async (id) => [id, (await readManifest(config.runDir, id))!.cacheKey]),
    ),
  );
  const reply = await rerun(h.client, handle.workflowId, '3');
  expect(reply.restarted).toBe(true);
  expect(reply.steps).toEqual(['merge', 'joint', 'extract', 'evaluate']);
  const result = (await h.client.workflow.getHandle(handle.workflowId).result()) as PipelineResult;
  const ranAgain = Object.entries(result.steps)
    .filter(([, r]) => !r.cached)
    .map(([id]) => id)
    .sort();
  expect(ranAgain).toEqual(['evaluate', 'extract', 'joint', 'merge']);
  for (const id of ['entropy0', 'sft', 'snapshot', 'entropy1', 'fuse']) {
    expect(result.steps[id].cached).toBe(true);
    expect((await readManifest(config.runDir, id))!.cacheKey).toBe(before[id]); // untouched
  }
  // the trained 5b was set aside and trained again from the start, not resumed from its end
  expect(result.steps.joint.metrics.resumed_from_step).toBe(0);
  expect(existsSync(path.join(config.runDir, '.wmss', 'rerun', 'joint'))).toBe(true);
});
