/**
 * What the fault suites (faults.test.ts, serverFaults.test.ts) share: a dev server with the tiny
 * model, runs that each have their own task queues and worker processes, a short data file, and
 * where each run's artifacts and fault markers are. Jest gives each test file its own copy of this
 * module, so each suite has its own harness.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import * as A from '../../pipeline/artifacts';
import { RunConfig } from '../../pipeline/config';
import { STEPS as ALL_STEPS, type StepId } from '../../pipeline/steps';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { startPipeline } from '../../client/commands/start';
import { faultMarker } from '../../activities/faults';
import { startHarness, tinyRunConfig, type Harness } from '../../testkit/harness';
import { WorkerProcess } from '../../testkit/faultKit';

/** The steps of the runs here: those every config runs (not the ONNX exports nor the baseline arm, which a config turns on). */
export const STEPS: StepId[] = ALL_STEPS.filter((row) => !row.when).map((row) => row.id);

/** Training long enough to be killed in the middle of (tens of ms per step on the tiny model). */
export const TRAIN = { maxSteps: 40, saveEvery: 10 };
export const HEARTBEAT_S = 15;
export const STALL_S = 30;

let h: Harness;
const workers: WorkerProcess[] = [];

export interface Run {
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

/** The suite's harness (after setUpFaultRuns). */
export const harness = (): Harness => h;

/** beforeAll: a dev server without workers (each run brings its own) and the short data file. */
export async function setUpFaultRuns(): Promise<void> {
  h = await startHarness({ workers: false });
  dataFile = path.join(h.dir, 'train.jsonl');
  const rows = readFileSync(path.join(h.assets, 'data', 'train.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean);
  writeFileSync(dataFile, `${rows.slice(0, DATA_ROWS).join('\n')}\n`);
}

/** afterAll: every worker process killed, the runs still going terminated, the harness stopped. */
export async function tearDownFaultRuns(runs: (Run | undefined)[]): Promise<void> {
  for (const w of workers) await w.kill();
  for (const run of runs) await run?.handle?.terminate().catch(() => undefined);
  await h?.stop();
}

export function runConfig(
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

export function newRun(
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

export async function start(run: Run): Promise<void> {
  run.handle = await startPipeline(h.client, run.config);
  run.done = run.handle.result().then(
    (r) => void (run.result = r as PipelineResult),
    (e) => void (run.error = e),
  );
}

export const inRun = (run: Run, rel: string) => path.join(run.config.runDir, rel);
export const marker = (run: Run, step: StepId, what: string) => existsSync(faultMarker(run.config.runDir, step, what));
export const manifestOf = (run: Run, step: StepId) => existsSync(inRun(run, A.manifestPath(step)));
export const stagedOf = (run: Run, rel: string) =>
  readdirSync(path.dirname(inRun(run, rel))).filter((n) => n.startsWith(`${path.basename(rel)}.partial-`));
export const stage1 = (run: Run) => inRun(run, A.STAGE1_DIR);
export const stage3 = (run: Run) => inRun(run, A.stage3Dir(run.config));
