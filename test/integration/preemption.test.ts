/**
 * Spot and preemption (activities/workerShutdown.ts): SIGTERM to the GPU worker that trains step 1.
 * Its kernel saves a checkpoint within the shutdown grace, the attempt fails at once as the
 * retryable WorkerShutdown (no heartbeat timeout), the worker exits, and the other GPU worker takes
 * the retry, which resumes from that checkpoint. Prints the seconds from SIGTERM to the retry's
 * first optimizer step (from the kernels' progress trace, WMSS_PROGRESS_TRACE).
 */
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { startPipeline } from '../../client/commands/start';
import { readManifest } from '../../activities/store/manifest';
import { RunConfig } from '../../pipeline/config';
import { startHarness, tinyRunConfig, until, type Harness } from '../../testkit/harness';
import { identityPid, readTrace, waitUntil, WorkerProcess } from '../../testkit/faultKit';

jest.setTimeout(900_000);

const GRACE_S = 30;
const SFT_STEPS = 150;
let h: Harness;
let trace: string;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  h = await startHarness({ workers: false });
  trace = path.join(h.dir, 'progress-trace.jsonl');
  const opts = {
    address: () => h.server.address,
    queues: { control: 'wmss', gpu: 'wmss-gpu' },
    logDir: path.join(h.dir, 'workers'),
    env: { WMSS_WORKER_SHUTDOWN_GRACE_SECONDS: String(GRACE_S), WMSS_PROGRESS_TRACE: trace },
  };
  workers.push(new WorkerProcess('control', opts), new WorkerProcess('gpu', opts), new WorkerProcess('gpu', opts));
  await Promise.all(workers.map((w) => w.ready()));
}, 300_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await h?.stop();
});

/** The pending activity of step 1 as the server describes it. */
async function sftActivity(handle: WorkflowHandle) {
  const d = await handle.describe();
  return d.raw.pendingActivities?.find((a) => a.activityId === 'sft');
}

test('SIGTERM to the worker training step 1: checkpoint, WorkerShutdown, retry on the other worker within grace + 10 s', async () => {
  const base = tinyRunConfig(h.assets, path.join(h.dir, 'run'), 'it-preempt');
  // no scheduled checkpoint before the end: the retry can only resume from the one SIGTERM made
  const config = RunConfig.parse({ ...base, sft: { ...base.sft, maxSteps: SFT_STEPS, saveEvery: 0 } });
  const handle = await startPipeline(h.client, config);
  await until('step 1 to train a few steps', async () => readTrace(trace, 'sft').some((l) => l.done >= 3), 300_000);
  const first = await sftActivity(handle);
  const victimPid = identityPid(first?.lastWorkerIdentity ?? undefined);
  const victim = workers.find((w) => w.kind === 'gpu' && w.pid === victimPid)!;
  const survivor = workers.find((w) => w.kind === 'gpu' && w !== victim)!;
  expect(victim).toBeDefined();
  const kernelPids = new Set(readTrace(trace, 'sft').map((l) => l.pid));

  const sigterm = Date.now();
  process.kill(victim.pid, 'SIGTERM'); // the worker process only, as a spot reclaim signals it
  let exitedAfter = Number.POSITIVE_INFINITY;
  const exited = new Promise<void>((resolve) => {
    const done = () => {
      exitedAfter = Date.now() - sigterm;
      resolve();
    };
    if (victim.child.exitCode !== null || victim.child.signalCode !== null) done();
    else victim.child.once('exit', done);
  });

  // the retry's first optimizer step: a progress line of a new kernel past the step it resumed from
  let resumedFrom = -1;
  await waitUntil(
    "the retry's first optimizer step",
    () => {
      const retry = readTrace(trace, 'sft').filter((l) => !kernelPids.has(l.pid));
      if (retry.length === 0) return false;
      resumedFrom = retry[0].done;
      return retry.some((l) => l.done > resumedFrom);
    },
    (GRACE_S + 60) * 1000,
    50,
  );
  const retryStep = readTrace(trace, 'sft').find((l) => !kernelPids.has(l.pid) && l.done > resumedFrom)!;
  const seconds = retryStep.t - sigterm / 1000;
  await exited;
  console.log(
    `preemption: SIGTERM → retry's first optimizer step on the other worker: ${seconds.toFixed(1)} s ` +
      `(grace ${GRACE_S} s; the worker exited after ${(exitedAfter / 1000).toFixed(1)} s; resumed from step ${resumedFrom})`,
  );
  expect(seconds).toBeLessThan(GRACE_S + 10);
  expect(exitedAfter).toBeLessThan(GRACE_S * 1000);

  const retried = await sftActivity(handle);
  expect(retried?.attempt).toBe(2);
  expect(identityPid(retried?.lastWorkerIdentity ?? undefined)).toBe(survivor.pid);
  expect(retried?.lastFailure?.applicationFailureInfo?.type).toBe('WorkerShutdown');
  expect(retried?.lastFailure?.message).toContain(`the kernel saved checkpoint ${resumedFrom}`);
  expect(resumedFrom).toBeGreaterThanOrEqual(3); // the SIGTERM checkpoint, not a start from scratch

  await until('step 1 to finish', async () => (await readManifest(config.runDir, 'sft')) !== undefined, 300_000);
  expect((await readManifest(config.runDir, 'sft'))!.result.metrics.resumed_from_step).toBe(resumedFrom);
  await handle.cancel(); // the rest of the pipeline is the other suites'
});
