/**
 * Runs survive crashes (docs/recovery.md), on one real dev server with real
 * worker processes, real kernels and the tiny model:
 *
 *  - three runs of one config side by side, each on task queues of its own with its own workers:
 *    R uninterrupted (the reference), A and B "chaos" runs. In A and B a worker is SIGKILLed during
 *    each of steps 0–7 (GPU worker for 0, 1, 2, 5b, 7; control worker, which also runs the workflow,
 *    for 3, 4, 5a, 6), a fresh one started, and the retry completes the step; the kernel of step 1 of
 *    A is killed alone, step 7 of A hangs, and step 5b of B dies while writing a checkpoint. Every
 *    deterministic output of A and B is byte-identical to R's.
 *  - at the same time, on a dev server of its own: SIGKILL of `temporal server start-dev` in the
 *    middle of training and a restart on the same SQLite file and port; joint training running out
 *    of memory (WMSS_FAULT_OOM) and retried with half the micro-batch; then `wmss cancel` during
 *    joint training and a `wmss resume <run dir>`.
 *
 * Killing "during" a step that takes milliseconds uses the test-only pause hooks
 * (activities/faults.ts: WMSS_FAULT_PAUSE), kernel faults use WMSS_FAULT_KERNEL
 * (kernels/wmss_kernels/faults.py). Needs the compiled workers: `npx tsc -p .` first.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Client, Connection, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import * as A from '../../pipeline/artifacts';
import { RunConfig } from '../../pipeline/config';
import type { StepId } from '../../pipeline/steps';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { startPipeline } from '../../client/commands/start';
import { faultMarker } from '../../activities/faults';
import { REPO_ROOT } from '../../activities/repoPaths';
import { startDevServer, type DevServer } from '../../client/devServer';
import { snapshotRun } from '../../client/commands/status';
import { freePort, startHarness, tinyRunConfig, type Harness } from '../../testkit/harness';
import {
  activityRecords,
  deterministicDigests,
  identityPid,
  kernelPids,
  killPids,
  liveGroupMembers,
  newestCheckpoint,
  processAlive,
  readTrace,
  timeline,
  waitUntil,
  WorkerProcess,
  type ActivityRecord,
} from '../../testkit/faultKit';

jest.setTimeout(600_000);

/** The steps of the runs here (the ONNX exports are not part of a torch config). */
const STEPS: StepId[] = ['entropy0', 'sft', 'snapshot', 'entropy1', 'merge', 'fuse', 'joint', 'extract', 'evaluate'];

/** Training long enough to be killed in the middle of (tens of ms per step on the tiny model). */
const TRAIN = { maxSteps: 40, saveEvery: 10 };
const HEARTBEAT_S = 15;
const STALL_S = 30;

let h: Harness;
const workers: WorkerProcess[] = [];

interface Run {
  name: string;
  config: RunConfig;
  gpu: WorkerProcess;
  control: WorkerProcess;
  handle?: WorkflowHandle;
  result?: PipelineResult;
  error?: unknown;
  done?: Promise<void>;
  /** What the driver saw and did, for the assertions. */
  seen: Record<string, unknown>;
}

/** The first DATA_ROWS records of the tiny data set: every kernel starts and scores faster. */
const DATA_ROWS = 256;
let dataFile: string;

function runConfig(
  name: string,
  train = TRAIN,
  timeouts: RunConfig['timeouts'] = { heartbeatSeconds: HEARTBEAT_S, stallSeconds: STALL_S },
): RunConfig {
  const base = tinyRunConfig(h.assets, path.join(h.dir, name), name);
  return RunConfig.parse({
    ...base,
    dataFile,
    // one model evaluated instead of three: the baselines add nothing to what is tested here
    eval: { ...base.eval, baselines: false },
    sft: { ...base.sft, ...train },
    joint: { ...base.joint, ...train },
    placement: { ...base.placement, controlQueue: name, gpuQueue: `${name}-gpu` },
    timeouts,
  });
}

function newRun(
  name: string,
  env: Record<string, string> = {},
  config = runConfig(name),
  address = () => h.server.address,
): Run {
  const opts = {
    address,
    queues: { control: config.placement.controlQueue, gpu: config.placement.gpuQueue },
    logDir: path.join(h.dir, 'workers'),
    env,
  };
  const gpu = new WorkerProcess('gpu', opts);
  const control = new WorkerProcess('control', opts);
  workers.push(gpu, control);
  return { name, config, gpu, control, seen: {} };
}

async function start(run: Run): Promise<void> {
  run.handle = await startPipeline(h.client, run.config);
  run.done = run.handle.result().then(
    (r) => void (run.result = r as PipelineResult),
    (e) => void (run.error = e),
  );
}

const inRun = (run: Run, rel: string) => path.join(run.config.runDir, rel);
const marker = (run: Run, step: StepId, what: string) => existsSync(faultMarker(run.config.runDir, step, what));
const manifestOf = (run: Run, step: StepId) => existsSync(inRun(run, A.manifestPath(step)));
const stagedOf = (run: Run, rel: string) =>
  readdirSync(path.dirname(inRun(run, rel))).filter((n) => n.startsWith(`${path.basename(rel)}.partial-`));
const stage1 = (run: Run) => inRun(run, A.STAGE1_DIR);
const stage3 = (run: Run) => inRun(run, A.stage3Dir(run.config));

/** One thing the driver does once its condition holds. */
interface Fault {
  run: Run;
  name: string;
  when: () => boolean | Promise<boolean>;
  act: () => Promise<void>;
  fired?: boolean;
}

let R: Run;
let CA: Run;
let CB: Run;
let records: Record<string, Record<string, ActivityRecord>>;
let digests: Record<string, Record<string, string>>;

/** The server scenario runs on a dev server of its own, side by side with the runs above (it kills its server). */
let S: Run & { server?: DevServer; client?: Client };
let serverScenario: Promise<unknown>;

beforeAll(async () => {
  h = await startHarness({ workers: false });
  dataFile = path.join(h.dir, 'train.jsonl');
  const rows = readFileSync(path.join(h.assets, 'data', 'train.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean);
  writeFileSync(dataFile, `${rows.slice(0, DATA_ROWS).join('\n')}\n`);
  serverScenario = runServerScenario().then(
    () => undefined,
    (err: unknown) => err,
  );
}, 300_000);

afterAll(async () => {
  for (const w of workers) await w.kill();
  for (const run of [R, CA, CB, S]) await run?.handle?.terminate().catch(() => undefined);
  await S?.client?.connection.close();
  await S?.server?.stop('SIGKILL');
  await h?.stop();
});

/** Kill the worker(s), note what was killed, start fresh ones at once (their start-up overlaps the heartbeat timeout). */
async function killAndRestart(run: Run, name: string, which: ('gpu' | 'control')[]): Promise<void> {
  run.seen[`${name}:killed`] = which.map((w) => run[w].pid);
  run.seen[`${name}:at`] = Date.now();
  await Promise.all(which.map((w) => run[w].kill()));
  which.forEach((w) => run[w].start());
}

function chaosFaults(): Fault[] {
  const a = CA;
  const b = CB;
  return [
    // --- run A
    {
      // Step 1's kernel alone, SIGKILL mid-training: the worker lives and reports KernelCrashed.
      run: a,
      name: 'sft-kernel',
      when: async () => (await newestCheckpoint(stage1(a))) >= TRAIN.saveEvery,
      act: async () => {
        const pids = kernelPids(a.config.runDir, 'sft', 1);
        expect(pids.length).toBeGreaterThan(0);
        killPids(pids);
        await waitUntil('the killed kernel to be gone', () => pids.every((p) => !processAlive(p)), 10_000);
        a.seen['sft-kernel:at'] = Date.now();
        a.seen['sft-kernel:checkpoint'] = await newestCheckpoint(stage1(a));
      },
    },
    {
      // Step 0 paused in its publish window (entropy staged, not renamed) and step 4 with its
      // outputs in place but no manifest: both workers killed at once.
      run: a,
      name: 'entropy0+snapshot',
      when: () => marker(a, 'entropy0', 'publish') && marker(a, 'snapshot', 'manifest'),
      act: async () => {
        a.seen['entropy0:staged'] = stagedOf(a, A.ENTROPY_0).length;
        a.seen['entropy0:final'] = existsSync(inRun(a, A.ENTROPY_0));
        a.seen['entropy0:manifest'] = manifestOf(a, 'entropy0');
        a.seen['snapshot:outputs'] = existsSync(inRun(a, `${A.STAGE0_DIR}/model.safetensors`));
        a.seen['snapshot:manifest'] = manifestOf(a, 'snapshot');
        await killAndRestart(a, 'entropy0+snapshot', ['gpu', 'control']);
      },
    },
    {
      run: a,
      name: 'entropy1+fuse',
      when: () => marker(a, 'entropy1', 'manifest') && marker(a, 'fuse', 'publish'),
      act: async () => {
        a.seen['entropy1:final'] = existsSync(inRun(a, A.ENTROPY_1));
        a.seen['entropy1:manifest'] = manifestOf(a, 'entropy1');
        a.seen['fuse:staged'] = stagedOf(a, A.FUSED_INIT_DIR).length;
        a.seen['fuse:final'] = existsSync(inRun(a, A.FUSED_INIT_DIR));
        await killAndRestart(a, 'entropy1+fuse', ['gpu', 'control']);
      },
    },
    {
      // Step 5b: the GPU worker alone; its kernel is told by Linux (PR_SET_PDEATHSIG), saves a
      // checkpoint on the spot and exits by itself.
      run: a,
      name: 'joint-worker',
      when: async () => (await newestCheckpoint(stage3(a))) >= TRAIN.saveEvery,
      act: async () => {
        const pids = kernelPids(a.config.runDir, 'joint', 1);
        expect(pids.length).toBeGreaterThan(0);
        a.seen['joint:checkpointAtKill'] = await newestCheckpoint(stage3(a));
        await killAndRestart(a, 'joint-worker', ['gpu']);
        const t = Date.now();
        await waitUntil(
          'the orphaned joint kernel to save and exit',
          () => pids.every((p) => !processAlive(p)),
          30_000,
        );
        a.seen['joint:kernelExitMs'] = Date.now() - t;
        a.seen['joint:checkpointAfterExit'] = await newestCheckpoint(stage3(a));
      },
    },
    {
      // Step 7's kernel hangs (alive, silent): noted here, detected by the stall limit.
      run: a,
      name: 'evaluate-hang',
      when: () => marker(a, 'evaluate', 'hang'),
      act: async () => {
        a.seen['evaluate-hang:at'] = Date.now();
        a.seen['evaluate-hang:pids'] = kernelPids(a.config.runDir, 'evaluate', 1);
      },
    },
    {
      run: a,
      name: 'evaluate-hang-alive',
      when: () => Date.now() - ((a.seen['evaluate-hang:at'] as number | undefined) ?? Infinity) > 10_000,
      act: async () => {
        a.seen['evaluate-hang:aliveAfter10s'] = (a.seen['evaluate-hang:pids'] as number[]).every(processAlive);
      },
    },
    // --- run B
    {
      // Step 1: the GPU worker and its kernel at the same instant, as a lost machine.
      run: b,
      name: 'sft-machine',
      when: async () => (await newestCheckpoint(stage1(b))) >= TRAIN.saveEvery,
      act: async () => {
        const pids = kernelPids(b.config.runDir, 'sft', 1);
        expect(pids.length).toBeGreaterThan(0);
        for (const pid of pids) killPids([-pid]);
        await killAndRestart(b, 'sft-machine', ['gpu']);
        await waitUntil('the killed kernel to be gone', () => pids.every((p) => !processAlive(p)), 10_000);
        b.seen['sft:checkpointAtKill'] = await newestCheckpoint(stage1(b));
      },
    },
    {
      // Step 3 killed in the middle of its renames: the merged file is in place, without a manifest.
      run: b,
      name: 'merge',
      when: () => marker(b, 'merge', 'rename'),
      act: async () => {
        b.seen['merge:finalMerged'] = existsSync(inRun(b, A.ENTROPY_MERGED));
        b.seen['merge:stagedOthers'] = [A.SAMPLE_WEIGHTS, A.RESAMPLED_POSITIONS, A.RESAMPLE_STATS].filter(
          (f) => stagedOf(b, f).length === 1,
        ).length;
        b.seen['merge:manifest'] = manifestOf(b, 'merge');
        await killAndRestart(b, 'merge', ['control']);
      },
    },
    {
      // Step 5b's kernel dies while writing its second checkpoint: files written, no COMPLETE.
      run: b,
      name: 'joint-checkpoint',
      when: () => marker(b, 'joint', 'die-before-complete'),
      act: async () => {
        const partial = path.join(stage3(b), `checkpoint-${2 * TRAIN.saveEvery}.partial`);
        b.seen['joint:partialFiles'] = existsSync(partial) ? readdirSync(partial).sort() : [];
        b.seen['joint:finalDir'] = existsSync(path.join(stage3(b), `checkpoint-${2 * TRAIN.saveEvery}`));
        b.seen['joint:newestComplete'] = await newestCheckpoint(stage3(b));
      },
    },
    {
      run: b,
      name: 'extract',
      when: () => marker(b, 'extract', 'publish'),
      act: async () => {
        b.seen['extract:staged'] = stagedOf(b, A.extractedDir(b.config)).length;
        await killAndRestart(b, 'extract', ['control']);
      },
    },
    {
      // Step 7: worker and kernel together as soon as the kernel has started.
      run: b,
      name: 'evaluate',
      when: () => kernelPids(b.config.runDir, 'evaluate', 1).length > 0,
      act: async () => {
        const pids = kernelPids(b.config.runDir, 'evaluate', 1);
        for (const pid of pids) killPids([-pid]);
        await killAndRestart(b, 'evaluate', ['gpu']);
        b.seen['evaluate:kernelKilled'] = pids.length;
      },
    },
  ];
}

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
      WMSS_PROGRESS_TRACE: path.join(h.dir, 'chaos-b.trace.jsonl'),
    });
    const t0 = Date.now();
    for (const run of [R, CA, CB]) await start(run);
    const faults = chaosFaults();
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
    const trace = readTrace(path.join(h.dir, 'chaos-b.trace.jsonl'), 'sft');
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

// ------------------------------------------------------------------------------------------------
// The server killed in the middle of training, then `wmss cancel` during joint training and a
// `wmss resume <run dir>`.

/** Long enough for a server restart and a cancellation to land in the middle of training. */
const LONG_TRAIN = { maxSteps: 120, saveEvery: 10 };

async function runServerScenario(): Promise<void> {
  const dir = path.join(h.dir, 'server-kill');
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
