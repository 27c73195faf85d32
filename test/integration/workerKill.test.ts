/**
 * A GPU worker killed with SIGKILL (with its kernel's process group) in the middle of Stage-1
 * training: a new worker takes the retry, training resumes from the last complete checkpoint
 * (at most one checkpoint interval redone), and the run completes. The worker runs as its own
 * process (compiled entry point, which `make test` builds), as it would on a GPU host.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { createControlWorker } from '../../workers/createWorkers';
import { startPipeline } from '../../client/commands/start';
import { snapshotRun } from '../../client/commands/status';
import { REPO_ROOT } from '../../activities/repoPaths';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { startHarness, tinyRunConfig, type Harness } from './harness';

jest.setTimeout(600_000);

let h: Harness;
const gpuWorkers: ChildProcess[] = [];

function startGpuWorker(address: string): ChildProcess {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'workers', 'gpu.js'), '--gpus', 'cpu', '--threads', '1'], {
    env: { ...process.env, TEMPORAL_ADDRESS: address },
    detached: true, // its own group: the kill takes the worker and its kernel, like a lost machine
    stdio: 'ignore',
  });
  gpuWorkers.push(child);
  return child;
}

beforeAll(async () => {
  h = await startHarness({ workers: false });
  const control = await createControlWorker({ connection: h.connection });
  h.workers.push(control);
  h.running.push(control.run());
}, 300_000);

afterAll(async () => {
  for (const w of gpuWorkers) {
    try {
      process.kill(-w.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await h?.stop();
});

test('training resumes from its last checkpoint after the GPU worker is killed', async () => {
  const saveEvery = 40;
  const base = tinyRunConfig(h.assets, path.join(h.dir, 'run'), 'it-kill');
  const config = { ...base, sft: { ...base.sft, maxSteps: 400, saveEvery }, timeouts: { heartbeatSeconds: 15 } };
  const first = startGpuWorker(h.server.address);
  const handle = await startPipeline(h.client, config);

  // Wait for a complete checkpoint, then kill the worker mid-training.
  let doneAtKill = 0;
  for (;;) {
    const snap = await snapshotRun(h.client, handle.workflowId);
    const beat = snap.heartbeats.find((b) => b.stepId === 'sft')?.details;
    if (beat?.lastCheckpoint && beat.lastCheckpoint.step >= saveEvery && beat.done < 400 - saveEvery) {
      doneAtKill = beat.done;
      break;
    }
    expect(snap.progress.steps.find((s) => s.id === 'sft')!.state).not.toBe('completed');
    await new Promise((r) => setTimeout(r, 250));
  }
  // Like a lost machine: the worker and, at the same instant, the kernel (its own process group;
  // a kernel whose worker dies alone would save a checkpoint on the spot and leave).
  const pidDir = path.join(config.runDir, '.wmss', 'jobs', 'sft.attempt-1.json.pids');
  const kernels = readdirSync(pidDir).filter((n) => /^\d+$/.test(n)).map(Number);
  expect(kernels.length).toBeGreaterThan(0);
  for (const pid of [first.pid!, ...kernels]) process.kill(-pid, 'SIGKILL');
  startGpuWorker(h.server.address);

  const result = (await handle.result()) as PipelineResult;
  const sft = result.steps.sft.metrics;
  expect(sft.steps).toBe(400);
  const resumedFrom = sft.resumed_from_step as number;
  expect(resumedFrom).toBeGreaterThanOrEqual(saveEvery);
  expect(resumedFrom % saveEvery).toBe(0);
  // At most one checkpoint interval (plus the steps between the last heartbeat and the kill) redone.
  expect(doneAtKill - resumedFrom).toBeLessThanOrEqual(saveEvery);

  const history = await handle.fetchHistory();
  const scheduled = history.events!.find((e) => e.activityTaskScheduledEventAttributes?.activityId === 'sft')!;
  const started = history.events!.filter((e) => e.activityTaskStartedEventAttributes && String(e.activityTaskStartedEventAttributes.scheduledEventId) === String(scheduled.eventId));
  expect(started.at(-1)!.activityTaskStartedEventAttributes!.attempt).toBe(2);
});
