/**
 * Runs survive the server and the operator (docs/recovery.md), on a dev server of their own with
 * real worker processes, real kernels and the tiny model: SIGKILL of `temporal server start-dev`
 * in the middle of training and a restart on the same SQLite file and port; joint training
 * running out of memory (WMSS_FAULT_OOM) and retried with half the micro-batch; then
 * `wmss cancel` during joint training and a `wmss resume <run dir>`. Needs the compiled workers
 * and CLI: `npx tsc -p .` first.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import * as A from '../../pipeline/artifacts';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { startPipeline } from '../../client/commands/start';
import { REPO_ROOT } from '../../activities/repoPaths';
import { startDevServer, type DevServer } from '../../client/devServer';
import { snapshotRun } from '../../client/commands/status';
import { freePort } from '../../testkit/harness';
import {
  activityRecords,
  kernelPids,
  liveGroupMembers,
  newestCheckpoint,
  processAlive,
  waitUntil,
  type ActivityRecord,
} from '../../testkit/faultKit';
import {
  harness,
  inRun,
  newRun,
  runConfig,
  setUpFaultRuns,
  stage1,
  stage3,
  STALL_S,
  tearDownFaultRuns,
  type Run,
} from './faultRuns';

jest.setTimeout(600_000);

let S: Run & { server?: DevServer; client?: Client };
let serverScenario: Promise<unknown>;

beforeAll(async () => {
  await setUpFaultRuns();
  serverScenario = runServerScenario().then(
    () => undefined,
    (err: unknown) => err,
  );
}, 300_000);

afterAll(async () => {
  await tearDownFaultRuns([S]);
  await S?.client?.connection.close();
  await S?.server?.stop('SIGKILL');
});

/** Long enough for a server restart and a cancellation to land in the middle of training. */
const LONG_TRAIN = { maxSteps: 120, saveEvery: 10 };

async function runServerScenario(): Promise<void> {
  const dir = path.join(harness().dir, 'server-kill');
  const serverOpts = {
    dbFile: path.join(dir, 'temporal.db'),
    port: await freePort(),
    logFile: path.join(dir, 'temporal.log'),
  };
  let server = await startDevServer(serverOpts);
  // The default 60 s heartbeat timeout: the server is away for a few seconds, which must not look like a dead worker.
  const config = runConfig('srv', LONG_TRAIN, { stallSeconds: STALL_S });
  // Out of memory at the start of joint training (WMSS_FAULT_OOM): attempt 2 runs with half the micro-batch.
  S = Object.assign(
    newRun('srv', { WMSS_FAULT_OOM: 'joint' }, config, () => server.address),
    { server },
  );
  S.client = new Client({ connection: await Connection.connect({ address: server.address }) });
  S.handle = await startPipeline(S.client, config);
  const seen = S.seen;

  // 1. SIGKILL the server mid-Stage-1 and start it again on the same SQLite file and port.
  await waitUntil(
    'a checkpoint of step 1',
    async () => (await newestCheckpoint(stage1(S))) >= LONG_TRAIN.saveEvery,
    240_000,
  );
  const sftPids = kernelPids(config.runDir, 'sft', 1);
  await S.server!.stop('SIGKILL');
  seen['server:killedAtStep'] = await newestCheckpoint(stage1(S));
  seen['server:kernelAliveWithoutServer'] = sftPids.length > 0 && sftPids.every(processAlive);
  const down = Date.now();
  server = S.server = await startDevServer(serverOpts);
  seen['server:downMs'] = Date.now() - down;

  // 2. `wmss cancel` in the middle of joint training.
  await waitUntil(
    'a checkpoint of step 5b',
    async () => (await newestCheckpoint(stage3(S))) >= LONG_TRAIN.saveEvery,
    300_000,
  );
  const jointPids = kernelPids(config.runDir, 'joint', 2); // attempt 1 ran out of memory
  seen['cancel:jointPids'] = jointPids;
  seen['cancel:at'] = Date.now();
  const cli = await promisify(execFile)(
    process.execPath,
    [path.join(REPO_ROOT, 'dist', 'client', 'cli.js'), 'cancel', S.handle.workflowId],
    { env: { ...process.env, TEMPORAL_ADDRESS: S.server.address } },
  );
  seen['cancel:stdout'] = cli.stdout;
  seen['cancel:error'] = await S.handle.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  seen['cancel:doneMs'] = Date.now() - (seen['cancel:at'] as number);
  seen['cancel:status'] = (await S.handle.describe()).status.name;
  seen['cancel:progress'] = (await snapshotRun(S.client, S.handle.workflowId)).progress.status;
  seen['cancel:groupMembers'] = jointPids.flatMap((pid) => liveGroupMembers(pid));
  seen['cancel:alive'] = jointPids.filter(processAlive);
  seen['cancel:newestCheckpoint'] = await newestCheckpoint(stage3(S));
  seen['cancel:log'] = readFileSync(inRun(S, `${A.LOGS_DIR}/joint.log`), 'utf8');
  seen['first:records'] = await activityRecords(S.handle);
  seen['first:sftManifest'] = JSON.parse(readFileSync(inRun(S, A.manifestPath('sft')), 'utf8'));
  seen['first:sftLog'] = readFileSync(inRun(S, `${A.LOGS_DIR}/sft.log`), 'utf8');

  // 3. `wmss resume <run dir>` (the config saved there): finished steps are cache hits, joint resumes.
  const resumed = await promisify(execFile)(
    process.execPath,
    [path.join(REPO_ROOT, 'dist', 'client', 'cli.js'), 'resume', config.runDir],
    { env: { ...process.env, TEMPORAL_ADDRESS: S.server.address } },
  );
  seen['resume:stdout'] = resumed.stdout;
  S.handle = S.client.workflow.getHandle(S.handle.workflowId);
  S.result = (await S.handle.result()) as PipelineResult;
}

describe('server killed, then cancel and restart', () => {
  test('SIGKILL of the dev server mid-training: workers reconnect to the restarted server, no step runs twice', async () => {
    const err = await serverScenario;
    if (err) throw err as Error;
    const seen = S.seen;
    console.log(`server down ${String(seen['server:downMs'])} ms; cancel took ${String(seen['cancel:doneMs'])} ms`);
    // The kernel kept training while the server was away.
    expect(seen['server:kernelAliveWithoutServer']).toBe(true);
    expect(seen['server:killedAtStep'] as number).toBeLessThan(LONG_TRAIN.maxSteps);
    // Every step before the cancel ran once, in its first attempt, and completed once.
    const first = seen['first:records'] as Record<string, ActivityRecord>;
    for (const step of ['entropy0', 'sft', 'snapshot', 'entropy1', 'merge', 'fuse'] as const) {
      expect([step, first[step].attempt, first[step].completed, first[step].failed, first[step].timedOut]).toEqual([
        step,
        1,
        1,
        0,
        0,
      ]);
    }
    // Training was not restarted: one kernel start, from step 0, to the end.
    const sft = (seen['first:sftManifest'] as { result: { metrics: Record<string, number> } }).result.metrics;
    expect([sft.resumed_from_step, sft.steps]).toEqual([0, LONG_TRAIN.maxSteps]);
    expect((seen['first:sftLog'] as string).match(/wmss_kernels [\d.]+: sft --job/g)).toHaveLength(1);
  });

  test('wmss cancel during training: checkpoint saved in the grace period, no kernel process left, the run is cancelled; wmss resume continues it', async () => {
    const err = await serverScenario;
    if (err) throw err as Error;
    const seen = S.seen;
    expect(seen['cancel:stdout']).toMatch(/cancellation requested for wmss-srv/);
    const cancelError = seen['cancel:error'];
    expect(cancelError).toBeInstanceOf(WorkflowFailedError);
    expect((cancelError as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
    expect(seen['cancel:status']).toBe('CANCELLED');
    expect(seen['cancel:progress']).toBe('cancelled');
    const first = seen['first:records'] as Record<string, ActivityRecord>;
    expect(first.joint.cancelled).toBe(1);
    expect([first.joint.attempt, first.joint.lastFailure]).toEqual([2, 'KernelOutOfMemory']);

    // The kernel saved a checkpoint where SIGTERM found it and stopped by itself (exit 4), well
    // within the grace period; nothing of its process group is left.
    const log = seen['cancel:log'] as string;
    const stopped = /KernelTerminated: stopped at step (\d+) of (\d+); checkpoint saved/.exec(log);
    expect(stopped).not.toBeNull();
    const at = Number(stopped![1]);
    expect(seen['cancel:newestCheckpoint']).toBe(at);
    expect(at).toBeGreaterThanOrEqual(LONG_TRAIN.saveEvery);
    expect(at).toBeLessThan(LONG_TRAIN.maxSteps);
    expect(seen['cancel:doneMs'] as number).toBeLessThan(60_000);
    expect((seen['cancel:jointPids'] as number[]).length).toBeGreaterThan(0);
    expect(seen['cancel:alive']).toEqual([]);
    expect(seen['cancel:groupMembers']).toEqual([]);

    // `wmss resume <run dir>`: everything before joint is a verified cache hit, joint resumes from the cancel's checkpoint.
    expect(seen['resume:stdout']).toMatch(/resumed srv as wmss-srv/);
    const result = S.result!;
    for (const step of ['entropy0', 'sft', 'snapshot', 'entropy1', 'merge', 'fuse'] as const)
      expect([step, result.steps[step].cached]).toEqual([step, true]);
    for (const step of ['joint', 'extract', 'evaluate'] as const)
      expect([step, result.steps[step].cached]).toEqual([step, false]);
    expect(result.steps.joint.metrics).toMatchObject({ resumed_from_step: at, steps: LONG_TRAIN.maxSteps });
  });

  test('out of memory (WMSS_FAULT_OOM) in joint training: the retry halves the micro-batch and doubles accumulation, kept across the cancel and resume, recorded in the manifest', async () => {
    const err = await serverScenario;
    if (err) throw err as Error;
    const configured = S.config.joint;
    expect(S.result!.steps.joint.metrics).toMatchObject({
      oom_halvings: 1,
      micro_batch: configured.microBatch / 2,
      grad_accum_per_rank: configured.gradAccum * 2,
      global_batch: configured.microBatch * configured.gradAccum,
    });
    const manifest = JSON.parse(readFileSync(inRun(S, A.manifestPath('joint')), 'utf8')) as {
      result: { metrics: Record<string, number> };
    };
    expect(manifest.result.metrics).toMatchObject({ oom_halvings: 1, micro_batch: configured.microBatch / 2 });
    expect(S.seen['cancel:log'] as string).toMatch(/simulated out of memory/);
  });
});
