/**
 * Run controls without a server (the integration suites runControls.test.ts and
 * preemption.test.ts run them for real): the bridge's save requests, which steps a rerun takes,
 * step names, the paused state of `wmss status`, and the shutdown grace settings.
 */
import { mkdirSync, mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SaveRequests } from '../../activities/kernelSaveRequests';
import { invalidateSteps } from '../../activities/invalidateSteps';
import { shutdownGraceMs } from '../../activities/workerShutdown';
import { stepIdOf } from '../../client/commands/runControls';
import { markPaused, renderSnapshot, type ActivityBeat, type RunSnapshot } from '../../client/commands/status';
import { RunConfig } from '../../pipeline/config';
import { stepsAfter } from '../../workflows/runControlHandlers';
import { shutdownForceTimeMs } from '../../workers/createWorkers';

const config = RunConfig.parse({ runName: 'r', runDir: '/r', baseModel: '/b', dataFile: '/d' });

test('a save request signals every recorded process, once there is one, and the next checkpoint answers it', async () => {
  let pids: number[] = [];
  const sent: [number, string][] = [];
  const saves = new SaveRequests(
    () => pids,
    (pid, signal) => sent.push([pid, signal]),
  );
  const a = saves.handle.requestCheckpoint();
  saves.saved({ path: '/x/checkpoint-3', step: 3 }); // not yet asked: the kernel had no pid yet
  expect(sent).toEqual([]);
  pids = [11, 12];
  saves.resend();
  expect(sent).toEqual([
    [11, 'SIGUSR1'],
    [12, 'SIGUSR1'],
  ]);
  const b = saves.handle.requestCheckpoint(); // overlapping: shares the checkpoint
  saves.saved({ path: '/x/checkpoint-7', step: 7 });
  await expect(a).resolves.toEqual({ path: '/x/checkpoint-7', step: 7 });
  await expect(b).resolves.toEqual({ path: '/x/checkpoint-7', step: 7 });
  const c = saves.handle.requestCheckpoint();
  saves.ended('the sft kernel ended before it saved the requested checkpoint');
  await expect(c).rejects.toThrow('ended before it saved');
  await expect(saves.handle.requestCheckpoint()).rejects.toThrow('already ended');
  await expect(saves.handle.ended).resolves.toBeUndefined();
});

test('a rerun takes the step and every step that needs it, directly or not, in table order', () => {
  expect(stepsAfter(config, 'merge')).toEqual(['joint', 'extract', 'evaluate']);
  expect(stepsAfter(config, 'entropy0')).toEqual(['merge', 'joint', 'extract', 'evaluate']);
  expect(stepsAfter(config, 'snapshot')).toEqual(['fuse', 'joint', 'extract', 'evaluate']);
  expect(stepsAfter(config, 'evaluate')).toEqual([]);
});

test('steps are named by number or id', () => {
  expect(stepIdOf('3')).toBe('merge');
  expect(stepIdOf('5b')).toBe('joint');
  expect(stepIdOf('sft')).toBe('sft');
  expect(() => stepIdOf('9')).toThrow(/unknown step "9": one of 0 \(entropy0\), 1 \(sft\)/);
});

test('invalidation removes manifests and sets an in-place output dir aside', async () => {
  const runDir = mkdtempSync(path.join(os.tmpdir(), 'wmss-rerun-'));
  const manifests = path.join(runDir, '.wmss', 'manifests');
  mkdirSync(manifests, { recursive: true });
  mkdirSync(path.join(runDir, 'stage1_m1', 'checkpoint-6'), { recursive: true });
  writeFileSync(path.join(runDir, 'merged.jsonl'), '{}\n');
  const manifest = (step: string, mode: string, outputs: Record<string, string>) =>
    writeFileSync(
      path.join(manifests, `${step}.wmss-step.json`),
      JSON.stringify({
        format: 'wmss-step/1',
        step,
        cacheKey: 'k',
        keyMaterial: {},
        inputs: {},
        mode,
        wmssFlowVersion: '0',
        host: 'h',
        outputs: Object.fromEntries(
          Object.entries(outputs).map(([n, p]) => [n, { path: p, kind: 'dir', size: 0, sha256: 'x' }]),
        ),
        result: { stepId: step, host: 'h', cached: false, outputs, metrics: {}, cacheKey: 'k', durationMs: 1 },
        timings: { startedAt: '', finishedAt: '', produceMs: 0, publishMs: 0, digestMs: 0 },
      }),
    );
  manifest('sft', 'in-place', { dir: 'stage1_m1', checkpoint: 'stage1_m1/checkpoint-6' });
  manifest('merge', 'atomic', { merged: 'merged.jsonl' });
  const done = await invalidateSteps({ runDir, steps: ['merge', 'sft', 'joint'] });
  expect(done).toEqual([
    '.wmss/manifests/merge.wmss-step.json',
    '.wmss/manifests/sft.wmss-step.json',
    'stage1_m1 → .wmss/rerun/sft/stage1_m1',
  ]);
  expect(existsSync(path.join(manifests, 'sft.wmss-step.json'))).toBe(false);
  expect(existsSync(path.join(runDir, 'stage1_m1'))).toBe(false);
  expect(existsSync(path.join(runDir, '.wmss', 'rerun', 'sft', 'stage1_m1', 'checkpoint-6'))).toBe(true);
  expect(existsSync(path.join(runDir, 'merged.jsonl'))).toBe(true); // an atomic step's re-run replaces it itself
});

test('wmss status shows a paused activity as paused, with its checkpoint and the unpause command', () => {
  const beat: ActivityBeat = {
    stepId: 'sft',
    activityType: 'trainSft',
    attempt: 2,
    state: 'other',
    pause: 'paused',
    details: {
      done: 74,
      total: 150,
      unit: 'steps',
      lastCheckpoint: { path: '/r/stage1_m1/checkpoint-74', step: 74 },
      updatedAt: '',
    },
  };
  const snap: RunSnapshot = {
    workflowId: 'wmss-r',
    progress: {
      runName: 'r',
      runDir: '/r',
      status: 'running',
      steps: [{ id: 'sft', number: '1', title: 'Stage-1 SFT', state: 'running', startedAt: new Date().toISOString() }],
    },
    heartbeats: [beat],
    workflowStatus: 'RUNNING',
    at: Date.now(),
  };
  markPaused(snap.progress, snap.heartbeats);
  expect(snap.progress.steps[0].state).toBe('paused');
  const text = renderSnapshot(snap);
  expect(text).toMatch(/Stage-1 SFT\s+paused\s/);
  expect(text).toContain('checkpoint 74 saved');
  expect(text).toContain('temporal activity unpause --workflow-id wmss-r --activity-id sft');
  // asked to pause, kernel still saving: running, and said so
  const pausing = { ...beat, pause: 'pausing' as const, state: 'started' as const };
  const snap2 = {
    ...snap,
    progress: { ...snap.progress, steps: [{ ...snap.progress.steps[0], state: 'running' as const }] },
    heartbeats: [pausing],
  };
  markPaused(snap2.progress, snap2.heartbeats);
  expect(snap2.progress.steps[0].state).toBe('running');
  expect(renderSnapshot(snap2)).toContain('pause requested');
});

test('the shutdown grace: default 120 s, from the environment, and the force time follows it', () => {
  expect(shutdownGraceMs({})).toBe(120_000);
  expect(shutdownGraceMs({ WMSS_WORKER_SHUTDOWN_GRACE_SECONDS: '45' })).toBe(45_000);
  expect(shutdownGraceMs({ WMSS_WORKER_SHUTDOWN_GRACE_SECONDS: 'soon' })).toBe(120_000);
  expect(shutdownForceTimeMs({ WMSS_WORKER_SHUTDOWN_GRACE_SECONDS: '45' })).toBe(75_000);
  expect(shutdownForceTimeMs({ WMSS_WORKER_SHUTDOWN_SECONDS: '30' })).toBe(30_000);
});
