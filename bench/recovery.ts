/**
 * Recovery from a lost GPU worker, on the demo's tiny model and config (client/commands/demo.ts:
 * its Stage-1 steps, the whole pipeline 0–7 with baselines), on a real dev server with workers as
 * processes of their own (the compiled entry points). Three runs of the same config, one after the
 * other in this process:
 *
 *  - uninterrupted, before and after the interrupted one: the reference is their mean, so a change
 *    of the machine's load during the bench evens out (and shows in the two figures);
 *  - interrupted: in the middle of step 1 (half-way between two checkpoints past the middle) the
 *    GPU worker and its kernel's process group are SIGKILLed, as a lost machine, and a new GPU
 *    worker is started at once.
 *
 * Figures: (a) time from the new worker's start to training progress resuming (the retry's kernel
 * finishing its first optimizer step), (b) training steps redone (the last step the killed kernel
 * finished minus the step the retry resumed from), (c) total run-time overhead of the interrupted
 * run against the uninterrupted one. Goals: (a) < 10 s + heartbeat timeout, (b) <= one checkpoint
 * interval (sft.saveEvery), (c) < 15 %. It also checks that both runs' deterministic outputs are
 * byte-identical. The kernels trace every progress update with its time (WMSS_PROGRESS_TRACE,
 * kernels/wmss_kernels/faults.py), which is how (a) and (b) are measured.
 *
 * Run: npx tsc -p . && node dist/bench/recovery.js   → bench/results/recovery.json
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import * as A from '../pipeline/artifacts';
import { RunConfig } from '../pipeline/config';
import type { PipelineResult } from '../pipeline/workflowApi';
import { REPO_ROOT } from '../activities/repoPaths';
import { startDevServer } from '../client/devServer';
import { demoConfig, makeTinyAssets } from '../client/commands/demo';
import { startPipeline } from '../client/commands/start';
import { freePort } from '../testkit/harness';
import { runBench, writeBenchResult } from '../testkit/benchResult';
import {
  deterministicDigests,
  kernelPids,
  killPids,
  processAlive,
  readTrace,
  waitUntil,
  WorkerProcess,
} from '../testkit/faultKit';

const HEARTBEAT_S = 15;
const SAVE_EVERY = 100;
/** Killed once the kernel has finished this step: past the middle of step 1, half a checkpoint interval after the newest one. */
const demoSteps = (demoConfig('/tmp', 'x').sft as { maxSteps: number }).maxSteps;
const KILL_AFTER_STEP = demoSteps / 2 + SAVE_EVERY / 2;

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-bench-recovery-'));
  const assets = path.join(REPO_ROOT, '.wmss', 'test-assets'); // the tests' tiny model (same make-tiny settings as the demo)
  const server = await startDevServer({
    dbFile: path.join(dir, 'temporal.db'),
    port: await freePort(),
    logFile: path.join(dir, 'temporal.log'),
  });
  const client = new Client({ connection: await Connection.connect({ address: server.address }) });
  const workers: WorkerProcess[] = [];
  try {
    await makeTinyAssets(assets, console.log);

    const configOf = (name: string) => {
      const demo = demoConfig(dir, name);
      return RunConfig.parse({
        ...demo,
        runDir: path.join(dir, name),
        baseModel: path.join(assets, 'tiny-qwen3'),
        dataFile: path.join(assets, 'data', 'train.jsonl'),
        sft: { ...demo.sft, saveEvery: SAVE_EVERY },
        joint: { ...demo.joint, saveEvery: SAVE_EVERY },
        placement: { controlQueue: name, gpuQueue: `${name}-gpu` },
        timeouts: { heartbeatSeconds: HEARTBEAT_S },
      });
    };

    /** One run with its own workers and queues; `during` acts while it runs. Returns its wall time (workflow start to result). */
    const run = async (name: string, during?: (config: RunConfig, gpu: WorkerProcess) => Promise<void>) => {
      const config = configOf(name);
      const trace = path.join(dir, `${name}.trace.jsonl`);
      const opts = {
        address: () => server.address,
        queues: { control: name, gpu: `${name}-gpu` },
        logDir: path.join(dir, 'workers'),
        env: { WMSS_PROGRESS_TRACE: trace },
      };
      const gpu = new WorkerProcess('gpu', opts);
      const control = new WorkerProcess('control', opts);
      workers.push(gpu, control);
      await Promise.all([gpu.ready(), control.ready()]);
      const t0 = Date.now();
      const handle = await startPipeline(client, config);
      const result = handle.result() as Promise<PipelineResult>;
      await during?.(config, gpu);
      const outcome = await result;
      const seconds = (Date.now() - t0) / 1000;
      await gpu.kill();
      await control.kill();
      return { config, trace, seconds, outcome };
    };

    // The uninterrupted run before and after the interrupted one: their mean is the baseline, so a
    // change of the machine's load (a shared CI host) during the bench shows and evens out.
    const before = await run('uninterrupted-1');
    let killedKernel = 0;
    let newWorkerAt = 0;
    const interrupted = await run('interrupted', async (config, gpu) => {
      const trace = path.join(dir, 'interrupted.trace.jsonl');
      await waitUntil(
        `step 1 to pass step ${KILL_AFTER_STEP}`,
        () => readTrace(trace, 'sft').some((l) => l.done >= KILL_AFTER_STEP),
        600_000,
        20,
      );
      const pids = kernelPids(config.runDir, 'sft', 1);
      if (pids.length === 0) throw new Error('no kernel pid recorded for step 1');
      killedKernel = readTrace(trace, 'sft')[0].pid;
      // a lost machine: the kernel's process group and the worker at the same instant
      for (const pid of pids) killPids([-pid]);
      await gpu.kill();
      gpu.start();
      newWorkerAt = Date.now();
      await waitUntil('the killed kernel to be gone', () => pids.every((p) => !processAlive(p)), 10_000);
    });
    const after = await run('uninterrupted-2');
    const reference = { ...before, seconds: (before.seconds + after.seconds) / 2 };

    // (a) and (b) from the interrupted run's trace of step 1
    const sft = readTrace(interrupted.trace, 'sft');
    const killedTrace = sft.filter((l) => l.pid === killedKernel);
    const retryTrace = sft.filter((l) => l.pid !== killedKernel);
    const lastDoneBeforeKill = Math.max(...killedTrace.map((l) => l.done));
    const resumedFrom = Number(interrupted.outcome.steps.sft.metrics.resumed_from_step);
    const kernelReady = retryTrace[0]; // the retry's first update: resumed state loaded, before its first step
    const firstStep = retryTrace.find((l) => l.done > resumedFrom);
    if (!kernelReady || !firstStep) throw new Error('the retry of step 1 left no progress trace');
    const retryJob = path.join(interrupted.config.runDir, A.JOBS_DIR, 'sft.attempt-2.json');
    const retryStartedS = (statSync(retryJob).mtimeMs - newWorkerAt) / 1000;
    const resumeS = (firstStep.t * 1000 - newWorkerAt) / 1000;
    const redone = lastDoneBeforeKill - resumedFrom;
    const overhead = interrupted.seconds / reference.seconds - 1;
    const same =
      JSON.stringify(await deterministicDigests(interrupted.config)) ===
      JSON.stringify(await deterministicDigests(before.config));

    const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
    console.log(
      `(a) new worker start → training progress resumed: ${round(resumeS)} s (goal < ${10 + HEARTBEAT_S} s = 10 s + heartbeat timeout ${HEARTBEAT_S} s); retry started on the new worker after ${round(retryStartedS)} s, its kernel had loaded the checkpoint after ${round(kernelReady.t - newWorkerAt / 1000)} s`,
    );
    console.log(
      `(b) training steps redone: ${redone} (the killed kernel had finished step ${lastDoneBeforeKill}, the retry resumed from checkpoint-${resumedFrom}; goal <= ${SAVE_EVERY}, one checkpoint interval)`,
    );
    console.log(
      `(c) run time: uninterrupted ${round(reference.seconds)} s (mean of ${round(before.seconds)} s before and ${round(after.seconds)} s after), interrupted ${round(interrupted.seconds)} s: overhead ${round(100 * overhead)} % (goal < 15 %)`,
    );
    console.log(`outputs of the two runs byte-identical: ${same ? 'yes' : 'NO'}`);
    console.log(`ratio interrupted/uninterrupted run time: ${round(interrupted.seconds / reference.seconds, 3)}`);

    writeBenchResult('recovery', {
      bench: 'recovery',
      date: new Date().toISOString(),
      host: {
        cpus: os.cpus()[0]?.model,
        cores: os.availableParallelism(),
        node: process.version,
        loadavg: os.loadavg(),
      },
      config: {
        sftSteps: demoSteps,
        saveEvery: SAVE_EVERY,
        heartbeatSeconds: HEARTBEAT_S,
        killAfterStep: KILL_AFTER_STEP,
      },
      figures: {
        resume_s: round(resumeS, 2),
        retry_started_s: round(retryStartedS, 2),
        kernel_ready_s: round(kernelReady.t - newWorkerAt / 1000, 2),
        steps_redone: redone,
        killed_after_step: lastDoneBeforeKill,
        resumed_from_step: resumedFrom,
        uninterrupted_s: round(reference.seconds, 2),
        uninterrupted_before_s: round(before.seconds, 2),
        uninterrupted_after_s: round(after.seconds, 2),
        interrupted_s: round(interrupted.seconds, 2),
        overhead_pct: round(100 * overhead, 2),
        outputs_identical: same,
      },
      goals: { resume_s: 10 + HEARTBEAT_S, steps_redone: SAVE_EVERY, overhead_pct: 15 },
      met: { resume: resumeS < 10 + HEARTBEAT_S, redone: redone <= SAVE_EVERY, overhead: overhead < 0.15 },
      ratio: round(interrupted.seconds / reference.seconds, 3),
    });
    if (!same) process.exitCode = 1;
  } finally {
    for (const w of workers) await w.kill();
    await client.connection.close();
    await server.stop();
    if (!process.env.WMSS_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
  }
}

runBench(main);
