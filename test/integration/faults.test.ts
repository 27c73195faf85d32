/**
 * Runs survive crashes (docs/recovery.md), on one real dev server with real worker processes,
 * real kernels and the tiny model: three runs of one config side by side, each on task queues of
 * its own with its own workers: R uninterrupted (the reference), A and B "chaos" runs. In A and B
 * a worker is SIGKILLed during each of steps 0–7 (GPU worker for 0, 1, 2, 5b, 7; control worker,
 * which also runs the workflow, for 3, 4, 5a, 6), a fresh one started, and the retry completes
 * the step; the kernel of step 1 of A is killed alone, step 7 of A hangs, and step 5b of B dies
 * while writing a checkpoint (chaosFaults.ts). Every deterministic output of A and B is
 * byte-identical to R's. The server, cancel and out-of-memory faults are serverFaults.test.ts.
 *
 * Killing "during" a step that takes milliseconds uses the test-only pause hooks
 * (activities/faults.ts: WMSS_FAULT_PAUSE), kernel faults use WMSS_FAULT_KERNEL
 * (kernels/wmss_kernels/faults.py). Needs the compiled workers: `npx tsc -p .` first.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import {
  activityRecords,
  deterministicDigests,
  identityPid,
  processAlive,
  readTrace,
  timeline,
  type ActivityRecord,
} from '../../testkit/faultKit';
import { chaosFaults, type Fault } from './chaosFaults';
import {
  harness,
  inRun,
  newRun,
  setUpFaultRuns,
  stage3,
  STALL_S,
  start,
  STEPS,
  tearDownFaultRuns,
  TRAIN,
  type Run,
} from './faultRuns';

jest.setTimeout(600_000);

let R: Run;
let CA: Run;
let CB: Run;
let records: Record<string, Record<string, ActivityRecord>>;
let digests: Record<string, Record<string, string>>;

beforeAll(setUpFaultRuns, 300_000);
afterAll(() => tearDownFaultRuns([R, CA, CB]));

describe('crashes during steps 0–7', () => {
  beforeAll(async () => {
    R = newRun('ref');
    CA = newRun('chaos-a', {
      WMSS_FAULT_PAUSE: 'entropy0:publish,snapshot:manifest,entropy1:manifest,fuse:publish',
      WMSS_FAULT_KERNEL: 'evaluate:hang',
    });
    // B's kernels trace every progress update: how many training steps were redone after the kill
    CB = newRun('chaos-b', {
      WMSS_FAULT_PAUSE: 'merge:rename,extract:publish',
      WMSS_FAULT_KERNEL: 'joint:die-before-complete',
      WMSS_PROGRESS_TRACE: path.join(harness().dir, 'chaos-b.trace.jsonl'),
    });
    const t0 = Date.now();
    for (const run of [R, CA, CB]) await start(run);
    const faults: Fault[] = chaosFaults(CA, CB);
    const ended = () => [R, CA, CB].every((r) => r.result !== undefined || r.error !== undefined);
    // The faults of one run act one after the other; the runs do not wait for each other (an act
    // that waits for a kernel to exit must not let the other run's training pass its kill point).
    const busy = new Set<Run>();
    const acts: Promise<void>[] = [];
    let actError: unknown;
    while (!ended() && actError === undefined) {
      for (const f of faults) {
        if (f.fired || busy.has(f.run) || f.run.result || f.run.error || !(await f.when())) continue;
        f.fired = true;
        busy.add(f.run);
        acts.push(
          f.act().then(
            () => void busy.delete(f.run),
            (err: unknown) => void (actError ??= err),
          ),
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await Promise.all(acts);
    if (actError !== undefined) throw actError as Error;
    for (const run of [R, CA, CB]) if (run.error) throw run.error as Error;
    const missed = faults.filter((f) => !f.fired).map((f) => `${f.run.name}/${f.name}`);
    if (missed.length) throw new Error(`faults never fired: ${missed.join(', ')}`);
    console.log(`faults: reference and chaos runs done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    records = {};
    digests = {};
    for (const run of [R, CA, CB]) {
      records[run.name] = await activityRecords(run.handle!);
      digests[run.name] = await deterministicDigests(run.config);
      console.log(`${run.name}: ${timeline(records[run.name], t0)}`);
    }
  }, 600_000);

  test('a worker killed during each of steps 0–7: a new worker takes the retry, outputs byte-identical to an uninterrupted run', () => {
    // The reference ran every step once.
    for (const step of STEPS)
      expect([step, records.ref[step].attempt, records.ref[step].completed]).toEqual([step, 1, 1]);

    const killedIn: Record<string, Run> = {
      entropy0: CA,
      snapshot: CA,
      entropy1: CA,
      fuse: CA,
      joint: CA,
      sft: CB,
      merge: CB,
      extract: CB,
      evaluate: CB,
    };
    const faultOf: Record<string, string> = {
      entropy0: 'entropy0+snapshot',
      snapshot: 'entropy0+snapshot',
      entropy1: 'entropy1+fuse',
      fuse: 'entropy1+fuse',
      joint: 'joint-worker',
      sft: 'sft-machine',
      merge: 'merge',
      extract: 'extract',
      evaluate: 'evaluate',
    };
    for (const [step, run] of Object.entries(killedIn)) {
      const r = records[run.name][step];
      // attempt 2 after the heartbeat timeout, completed once, by a worker started after the kill
      expect({ step, attempt: r.attempt, lastFailure: r.lastFailure, completed: r.completed }).toEqual({
        step,
        attempt: 2,
        lastFailure: 'timeout HEARTBEAT',
        completed: 1,
      });
      const killed = run.seen[`${faultOf[step]}:killed`] as number[];
      const by = identityPid(r.startedBy);
      expect(killed).not.toContain(by);
      expect([...run.gpu.pids, ...run.control.pids]).toContain(by);
      expect(run.result!.steps[step].cached).toBe(false);
    }
    // Every step of the pipeline had its worker killed once.
    expect(Object.keys(killedIn).sort()).toEqual([...STEPS].sort());

    // Training resumed from the newest complete checkpoint: B's sft (worker and kernel killed at
    // once) from the one on disk at the kill, so fewer than saveEvery steps were redone (no newer
    // checkpoint existed, so the kernel had not passed the next one).
    const sftB = CB.result!.steps.sft.metrics;
    expect(sftB.steps).toBe(TRAIN.maxSteps);
    expect(sftB.resumed_from_step).toBe(CB.seen['sft:checkpointAtKill']);
    expect(sftB.resumed_from_step as number).toBeGreaterThanOrEqual(TRAIN.saveEvery);
    // at most one checkpoint interval redone: the killed kernel's last finished step minus the resume step
    const trace = readTrace(path.join(harness().dir, 'chaos-b.trace.jsonl'), 'sft');
    const killedKernel = trace[0].pid;
    const lastDone = Math.max(...trace.filter((l) => l.pid === killedKernel).map((l) => l.done));
    expect(trace.filter((l) => l.pid !== killedKernel)[0].done).toBe(sftB.resumed_from_step);
    expect(lastDone - (sftB.resumed_from_step as number)).toBeGreaterThanOrEqual(0);
    expect(lastDone - (sftB.resumed_from_step as number)).toBeLessThanOrEqual(TRAIN.saveEvery);
    // A's joint: the worker alone; its kernel saved where it was and left by itself.
    const jointA = CA.result!.steps.joint.metrics;
    expect(CA.seen['joint:kernelExitMs'] as number).toBeLessThan(30_000);
    expect(jointA.resumed_from_step).toBe(CA.seen['joint:checkpointAfterExit']);
    expect(jointA.resumed_from_step as number).toBeGreaterThanOrEqual(CA.seen['joint:checkpointAtKill'] as number);

    // Byte-identical deterministic outputs.
    expect(Object.keys(digests.ref).length).toBeGreaterThan(20);
    expect(digests['chaos-a']).toEqual(digests.ref);
    expect(digests['chaos-b']).toEqual(digests.ref);
  });

  test('a kernel killed alone: the attempt fails KernelCrashed, the retry resumes from the last complete checkpoint', () => {
    const r = records['chaos-a'].sft;
    expect({ attempt: r.attempt, lastFailure: r.lastFailure, completed: r.completed }).toEqual({
      attempt: 2,
      lastFailure: 'KernelCrashed',
      completed: 1,
    });
    const metrics = CA.result!.steps.sft.metrics;
    expect(metrics.resumed_from_step).toBe(CA.seen['sft-kernel:checkpoint']);
    expect(metrics.resumed_from_step as number).toBeGreaterThanOrEqual(TRAIN.saveEvery);
  });

  test('a hung kernel (alive, no progress) is killed at the stall limit and the retry completes', () => {
    const r = records['chaos-a'].evaluate;
    expect({ attempt: r.attempt, lastFailure: r.lastFailure, completed: r.completed }).toEqual({
      attempt: 2,
      lastFailure: 'KernelStalled',
      completed: 1,
    });
    const hungPids = CA.seen['evaluate-hang:pids'] as number[];
    expect(hungPids.length).toBeGreaterThan(0);
    expect(CA.seen['evaluate-hang:aliveAfter10s']).toBe(true); // hung, not dead
    expect(hungPids.some(processAlive)).toBe(false);
    // detected after the stall limit (the bridge checks every 5 s), then the retry's back-off
    const retryJob = inRun(CA, `${A.JOBS_DIR}/evaluate.attempt-2.json`);
    const detectedAfter = (statSync(retryJob).mtimeMs - (CA.seen['evaluate-hang:at'] as number)) / 1000;
    expect(detectedAfter).toBeGreaterThan(STALL_S - 1);
    expect(detectedAfter).toBeLessThan(STALL_S + 30);
  });

  test('half-written artifacts are never used: staged or unmanifested outputs and checkpoints without COMPLETE are redone', () => {
    // entropy0 killed in its publish window: staged, nothing in place, no manifest.
    expect([CA.seen['entropy0:staged'], CA.seen['entropy0:final'], CA.seen['entropy0:manifest']]).toEqual([
      1,
      false,
      false,
    ]);
    // snapshot and entropy1 killed with outputs in place but before the manifest: the retry ran
    // them again (cached false, checked above) instead of taking the outputs as done.
    expect([CA.seen['snapshot:outputs'], CA.seen['snapshot:manifest']]).toEqual([true, false]);
    expect([CA.seen['entropy1:final'], CA.seen['entropy1:manifest']]).toEqual([true, false]);
    expect([CA.seen['fuse:staged'], CA.seen['fuse:final']]).toEqual([1, false]);
    // merge killed between renames: one output in place, three staged, no manifest.
    expect([CB.seen['merge:finalMerged'], CB.seen['merge:stagedOthers'], CB.seen['merge:manifest']]).toEqual([
      true,
      3,
      false,
    ]);
    expect(CB.seen['extract:staged']).toBe(1);
    // No staging leftovers in the finished runs.
    for (const run of [CA, CB]) {
      for (const dir of [A.ENTROPY_DIR, '.'])
        expect(readdirSync(inRun(run, dir)).filter((n) => /\.(partial|old)-/.test(n))).toEqual([]);
    }
    // joint died after writing checkpoint-20's files, before COMPLETE: the retry ignored it and
    // resumed from checkpoint-10, the newest complete one.
    expect(CB.seen['joint:partialFiles']).toEqual(
      expect.arrayContaining(['model.safetensors', 'optimizer.pt', 'trainer_state.json']),
    );
    expect(CB.seen['joint:partialFiles']).not.toContain('COMPLETE');
    expect(CB.seen['joint:finalDir']).toBe(false);
    expect(CB.seen['joint:newestComplete']).toBe(TRAIN.saveEvery);
    const r = records['chaos-b'].joint;
    expect({ attempt: r.attempt, lastFailure: r.lastFailure }).toEqual({ attempt: 2, lastFailure: 'KernelCrashed' });
    expect(CB.result!.steps.joint.metrics.resumed_from_step).toBe(TRAIN.saveEvery);
    expect(existsSync(path.join(stage3(CB), `checkpoint-${2 * TRAIN.saveEvery}.partial`))).toBe(false);
    expect(existsSync(path.join(stage3(CB), `checkpoint-${2 * TRAIN.saveEvery}`, 'COMPLETE'))).toBe(true);
  });
});
