/**
 * The run dir lock with the real workflow, the real lock activities and a real run dir, on a local
 * dev server; the pipeline's steps are stubs (quick, or held open until the test lets them go).
 * What is checked: a run holds its run dir from its first step to its end, a second run on the
 * same dir is refused at once, every way out releases the lock, a terminated run's lock is taken
 * over by `wmss resume` (same workflow id) only after the grace, and a worker crash keeps it.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { lockDir, readRunLock, runLockActivities } from '../../activities/runLock';
import { RunConfig } from '../../pipeline/config';
import { ErrorTypes } from '../../pipeline/errors';
import { STEPS, type StepInput, type StepResult } from '../../pipeline/steps';
import { WORKFLOW_TYPE } from '../../pipeline/workflowApi';
import { configToResume } from '../../client/commands/resume';
import { startPipeline } from '../../client/commands/start';
import { startLocalEnv } from './localEnv';

jest.setTimeout(180_000);

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;
const dirs: string[] = [];

beforeAll(async () => {
  ({ env, bundle } = await startLocalEnv());
});

afterAll(async () => {
  await env?.teardown();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  delete process.env.WMSS_LOCK_TERMINATED_GRACE_SECONDS;
});

function runDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'wmss-lock-wf-'));
  dirs.push(d);
  return d;
}

const config = (runName: string, dir: string) =>
  RunConfig.parse({ runName, runDir: dir, baseModel: '/models/base', dataFile: '/data/train.jsonl' });

/** Step stubs: sft of the runs named in `hold` waits until released (heartbeating, so cancellation reaches it). */
class Stubs {
  started: { runName: string; step: string; t: number; runDir: string }[] = [];
  hold = new Set<string>();
  failSft = new Set<string>();
  private released = new Set<string>();
  release(runName: string) {
    this.released.add(runName);
  }
  activities() {
    const step = async (input: StepInput): Promise<StepResult> => {
      this.started.push({
        runName: input.config.runName,
        step: input.stepId,
        t: Date.now(),
        runDir: input.config.runDir,
      });
      if (input.stepId === 'sft' && this.failSft.has(input.config.runName))
        throw ApplicationFailure.create({ type: ErrorTypes.InvalidInput, nonRetryable: true, message: 'bad data' });
      if (input.stepId === 'sft' && this.hold.has(input.config.runName)) {
        while (!this.released.has(input.config.runName)) {
          Context.current().heartbeat('held');
          await Context.current().sleep(100);
        }
      }
      return {
        stepId: input.stepId,
        host: 'test',
        cached: false,
        outputs: { checkpoint: 'x', model: 'm', fused: 'f', positions: 'p' },
        metrics: {},
        cacheKey: `${input.stepId}-key`,
        durationMs: 1,
      };
    };
    return { ...Object.fromEntries(STEPS.map((s) => [s.activity, step])), ...runLockActivities() };
  }
}

async function startWorkers(stubs: Stubs) {
  const workers = await Promise.all(
    ['wmss', 'wmss-gpu'].map((taskQueue) =>
      Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: bundle,
        activities: stubs.activities(),
        maxConcurrentActivityTaskExecutions: 10,
        maxHeartbeatThrottleInterval: '1s',
      }),
    ),
  );
  const running = workers.map((w) => w.run());
  return {
    workers,
    stop: async () => (
      workers.forEach((w) => w.getState() === 'RUNNING' && w.shutdown()),
      await Promise.allSettled(running)
    ),
  };
}

const start = (runName: string, dir: string, workflowId = `wf-lock-${runName}-${Date.now()}`) =>
  env.client.workflow.start(WORKFLOW_TYPE, { taskQueue: 'wmss', workflowId, args: [config(runName, dir)] });

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const heldBy = async (dir: string) => (await readRunLock(dir))?.record;
const generations = (dir: string) =>
  existsSync(lockDir(dir)) ? readdirSync(lockDir(dir)).filter((f) => /^\d+\.json$/.test(f)) : [];

async function failureOf(handle: WorkflowHandle): Promise<ApplicationFailure> {
  const err = await handle.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  return (err as WorkflowFailedError).cause as ApplicationFailure;
}

test('a run holds its run dir from before its first step to its end; a second run on the dir is refused at once', async () => {
  const stubs = new Stubs();
  const w = await startWorkers(stubs);
  try {
    const dir = runDir();
    stubs.hold.add('first');
    const first = await start('first', dir);
    const holder = await until('the lock', () => heldBy(dir));
    expect(holder).toMatchObject({
      workflowId: first.workflowId,
      runId: first.firstExecutionRunId,
      namespace: 'default',
      runName: 'first',
    });
    await until('sft to start', () => stubs.started.find((s) => s.runName === 'first' && s.step === 'sft'));
    // the resolved config is saved under the lock, for `wmss resume <run dir>`
    expect(JSON.parse(readFileSync(path.join(dir, '.wmss/run-config.json'), 'utf8'))).toEqual(config('first', dir));

    const second = await start('second', dir);
    const refused = await failureOf(second);
    expect(refused.type).toBe(ErrorTypes.RunDirLocked);
    expect(refused.message).toContain(first.workflowId);
    expect(refused.message).toMatch(/still running/);
    expect(stubs.started.filter((s) => s.runName === 'second')).toEqual([]); // not one step
    expect((await heldBy(dir))?.runId).toBe(first.firstExecutionRunId);

    stubs.release('first');
    await first.result();
    expect(generations(dir)).toEqual([]);
    // and now the dir is free: the same second config runs
    await start('second', dir).then((h) => h.result());
    expect(generations(dir)).toEqual([]);
  } finally {
    await w.stop();
  }
});

test('a cancelled run and a failed run release the lock', async () => {
  const stubs = new Stubs();
  const w = await startWorkers(stubs);
  try {
    const dir = runDir();
    stubs.hold.add('cancelled');
    const cancelled = await start('cancelled', dir);
    await until('sft to start', () => stubs.started.find((s) => s.runName === 'cancelled' && s.step === 'sft'));
    expect(generations(dir)).toHaveLength(1);
    await cancelled.cancel();
    await cancelled.result().catch(() => undefined);
    expect((await cancelled.describe()).status.name).toBe('CANCELLED');
    expect(generations(dir)).toEqual([]);

    stubs.failSft.add('failed');
    const failed = await start('failed', dir);
    expect((await failureOf(failed)).type).toBe(ErrorTypes.InvalidInput);
    expect(generations(dir)).toEqual([]);
  } finally {
    await w.stop();
  }
});

test('a terminated run keeps its lock until `wmss resume` (same workflow id) takes it over after the grace', async () => {
  process.env.WMSS_LOCK_TERMINATED_GRACE_SECONDS = '3';
  const stubs = new Stubs();
  const w = await startWorkers(stubs);
  try {
    const dir = runDir();
    stubs.hold.add('term');
    const workflowId = `wf-lock-term-${Date.now()}`;
    const first = await start('term', dir, workflowId);
    await until('sft to start', () => stubs.started.find((s) => s.runName === 'term' && s.step === 'sft'));
    await first.terminate('simulated loss of the run');
    const terminatedAt = Date.now();
    expect((await heldBy(dir))?.runId).toBe(first.firstExecutionRunId); // nobody released it

    stubs.hold.delete('term');
    const before = stubs.started.length;
    const resumed = await start('term', dir, workflowId);
    await resumed.result();
    const firstStep = stubs.started.slice(before).find((s) => s.runName === 'term')!;
    expect(firstStep.t - terminatedAt).toBeGreaterThanOrEqual(2900); // waited for the terminated run's activities
    expect(generations(dir)).toEqual([]);
  } finally {
    await w.stop();
    delete process.env.WMSS_LOCK_TERMINATED_GRACE_SECONDS;
  }
});

test('a crashed worker does not release the lock: the run goes on elsewhere and still owns its dir', async () => {
  const stubs = new Stubs();
  let w = await startWorkers(stubs);
  const dir = runDir();
  try {
    stubs.hold.add('survivor');
    const run = await start('survivor', dir);
    await until('sft to start', () => stubs.started.find((s) => s.runName === 'survivor' && s.step === 'sft'));
    const lock = await heldBy(dir);
    await w.stop(); // the worker goes away mid-step
    w = await startWorkers(stubs); // and another one comes up
    expect(await heldBy(dir)).toEqual(lock);
    const intruder = await start('intruder', dir);
    expect((await failureOf(intruder)).type).toBe(ErrorTypes.RunDirLocked);
    stubs.release('survivor');
    await run.result();
    expect(stubs.started.filter((s) => s.runName === 'survivor' && s.step === 'sft').length).toBeGreaterThanOrEqual(2); // retried on the new worker
    expect(generations(dir)).toEqual([]);
  } finally {
    await w.stop();
  }
});

test("`wmss resume` of a scheduled run continues in that run's own run dir, taking over its lock", async () => {
  const stubs = new Stubs();
  const w = await startWorkers(stubs);
  const dir = runDir();
  const scheduleId = `sched-lock-${Date.now()}`;
  try {
    stubs.failSft.add('nightly');
    const schedule = await env.client.schedule.create({
      scheduleId,
      spec: { intervals: [{ every: '1d' }] },
      action: {
        type: 'startWorkflow',
        workflowType: WORKFLOW_TYPE,
        workflowId: `wmss-nightly-${Date.now()}`,
        taskQueue: 'wmss',
        args: [config('nightly', dir)],
      },
      state: { paused: true },
    });
    await schedule.trigger();
    const scheduledId = await until(
      'the scheduled run',
      async () => (await schedule.describe()).info.recentActions[0]?.action.workflow.workflowId,
    );
    expect((await failureOf(env.client.workflow.getHandle(scheduledId))).type).toBe(ErrorTypes.InvalidInput);
    const scheduledDir = stubs.started.find((s) => s.runName === 'nightly')!.runDir;
    expect(path.dirname(scheduledDir)).toBe(dir); // a scheduled run gets <runDir>/<datetime>

    stubs.failSft.delete('nightly');
    const resumed = await configToResume(env.client, scheduledId);
    expect(resumed.runDir).toBe(scheduledDir);
    const before = stubs.started.length;
    const handle = await startPipeline(env.client, resumed);
    await handle.result();
    expect(new Set(stubs.started.slice(before).map((s) => s.runDir))).toEqual(new Set([scheduledDir]));
    expect(generations(scheduledDir)).toEqual([]);
    await schedule.delete();
  } finally {
    await w.stop();
  }
});
