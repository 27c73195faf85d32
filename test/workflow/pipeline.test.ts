/**
 * Workflow logic on a local dev server (the project's Temporal CLI) with stub activities:
 * DAG order and concurrency, failure typing, retries, cancellation, config validation.
 * The real activities and kernels are exercised by test/integration.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { RunConfig } from '../../pipeline/config';
import { WmssStatus } from '../../pipeline/searchAttributes';
import { STEPS, activeSteps, type ActivityName, type StepInput, type StepResult } from '../../pipeline/steps';
import { progressQuery, WORKFLOW_TYPE, type PipelineProgress, type PipelineResult } from '../../pipeline/workflowApi';
import { ErrorTypes } from '../../pipeline/errors';
import { startLocalEnv } from './localEnv';

jest.setTimeout(120_000);

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  ({ env, bundle } = await startLocalEnv());
});

afterAll(async () => {
  await env?.teardown();
});

const config = (runName: string, overrides: Record<string, unknown> = {}) =>
  RunConfig.parse({
    runName,
    runDir: '/tmp/wmss-wf-test',
    baseModel: '/models/base',
    dataFile: '/data/train.jsonl',
    ...overrides,
  });

type Stub = (input: StepInput) => Promise<Partial<StepResult> | void>;
interface Event {
  step: string;
  at: 'start' | 'end';
  t: number;
}

/** Runs the workflow with stub activities; `stubs` override the default (short sleep, success). */
async function runWith(
  runName: string,
  stubs: Partial<Record<string, Stub>>,
  during?: (id: string) => Promise<void>,
  after?: (id: string) => Promise<void>,
  overrides: Record<string, unknown> = {},
) {
  const events: Event[] = [];
  const make =
    (name: ActivityName) =>
    async (input: StepInput): Promise<StepResult> => {
      events.push({ step: input.stepId, at: 'start', t: Date.now() });
      const extra = (await (stubs[input.stepId] ?? (() => new Promise((r) => setTimeout(r, 300))))(input)) ?? {};
      events.push({ step: input.stepId, at: 'end', t: Date.now() });
      return {
        stepId: input.stepId,
        host: 'test',
        cached: false,
        outputs: { checkpoint: 'x', model: 'm', fused: 'f', positions: 'p' },
        metrics: name === 'evaluate' ? { 'pass_at_1/wmss/gsm8k': 0.5 } : {},
        cacheKey: `${input.stepId}-key`,
        durationMs: 1,
        ...extra,
      };
    };
  // the run dir lock is tested with its real activities in test/workflow/runLock.test.ts
  const lock = {
    lockRunDir: async (i: { runDir: string }) => ({ runDir: i.runDir, generation: 1, host: 'test' }),
    unlockRunDir: async () => true,
  };
  const activities = { ...Object.fromEntries(STEPS.map((s) => [s.activity, make(s.activity)])), ...lock };
  const workers = await Promise.all(
    ['wmss', 'wmss-gpu'].map((taskQueue) =>
      Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: bundle,
        activities,
        maxConcurrentActivityTaskExecutions: 10,
        maxHeartbeatThrottleInterval: '1s',
      }),
    ),
  );
  const workflowId = `wf-${runName}-${Date.now()}`;
  let result: PipelineResult | undefined;
  let error: unknown;
  const runs = workers.map((w) => w.run());
  try {
    const handle = await env.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: 'wmss',
      workflowId,
      args: [config(runName, overrides)],
    });
    if (during) await during(workflowId);
    result = (await handle.result()) as PipelineResult;
    // Queries of a closed run replay it on a worker, so inspect before the workers stop.
    if (after) await after(workflowId);
  } catch (err) {
    error = err;
  } finally {
    workers.forEach((w) => w.shutdown());
    await Promise.all(runs);
  }
  return { events, result, error, workflowId };
}

const startOf = (events: Event[], step: string) => events.find((e) => e.step === step && e.at === 'start')!.t;
const endOf = (events: Event[], step: string) => events.find((e) => e.step === step && e.at === 'end')!.t;

test('runs every step once, in DAG order, with 0, 1 and 4 side by side', async () => {
  let progress: PipelineProgress | undefined;
  let status: string | undefined;
  const { events, result, error } = await runWith('dag', {}, undefined, async (id) => {
    const handle = env.client.workflow.getHandle(id);
    progress = await handle.query(progressQuery);
    status = (await handle.describe()).typedSearchAttributes.get(WmssStatus);
  });
  expect(error).toBeUndefined();
  // the default config has no onnx backend, so its ONNX export steps (`when`) are left out
  expect(events.some((e) => e.step.startsWith('onnx'))).toBe(false);
  for (const row of activeSteps(config('dag'))) {
    expect(events.filter((e) => e.step === row.id && e.at === 'start')).toHaveLength(1);
    for (const need of row.needs.filter((n) => activeSteps(config('dag')).some((r) => r.id === n)))
      expect(startOf(events, row.id)).toBeGreaterThanOrEqual(endOf(events, need));
  }
  // The three roots start before any of them has finished.
  const firstEnd = Math.min(...['entropy0', 'sft', 'snapshot'].map((s) => endOf(events, s)));
  for (const root of ['entropy0', 'sft', 'snapshot']) expect(startOf(events, root)).toBeLessThan(firstEnd);
  expect(result!.accuracy).toEqual({ wmss: { gsm8k: 0.5 } });

  expect(progress!.status).toBe('completed');
  expect(progress!.steps.map((s) => s.state)).toEqual(activeSteps(config('dag')).map(() => 'completed'));
  expect(status).toBe('completed');
});

test('a non-retryable failure fails the run at once, names the step, and stops the other steps', async () => {
  let sftCancelled = false;
  const { error, events } = await runWith('bad-input', {
    entropy0: async () => {
      throw ApplicationFailure.create({
        type: ErrorTypes.InvalidInput,
        nonRetryable: true,
        message: 'train.jsonl line 7: field "messages": expected a list',
      });
    },
    sft: async () => {
      // A long training step, heartbeating so that it learns about the cancellation.
      for (let i = 0; i < 200; i++) {
        try {
          Context.current().heartbeat(i);
          await Context.current().sleep(100);
        } catch (err) {
          sftCancelled = true;
          throw err;
        }
      }
    },
  });
  expect(error).toBeInstanceOf(WorkflowFailedError);
  const cause = (error as WorkflowFailedError).cause as ApplicationFailure;
  expect(cause.type).toBe(ErrorTypes.InvalidInput);
  expect(cause.message).toMatch(/step 0 .*train\.jsonl line 7: field "messages"/);
  expect(events.filter((e) => e.step === 'entropy0' && e.at === 'start')).toHaveLength(1); // not retried
  expect(sftCancelled).toBe(true);
  expect(events.some((e) => e.step === 'merge')).toBe(false);
});

test('a crashed kernel is retried and the run completes', async () => {
  let attempts = 0;
  const { error, events } = await runWith('retry', {
    snapshot: async () => {
      attempts += 1;
      if (attempts === 1) throw ApplicationFailure.create({ type: ErrorTypes.KernelCrashed, message: 'boom' });
    },
  });
  expect(error).toBeUndefined();
  expect(attempts).toBe(2);
  expect(events.filter((e) => e.step === 'snapshot' && e.at === 'end')).toHaveLength(1);
});

test('cancelling the run cancels the running steps and reports cancelled', async () => {
  let sawCancel = false;
  const { error, workflowId } = await runWith(
    'cancel',
    {
      sft: async () => {
        for (;;) {
          try {
            Context.current().heartbeat('working');
            await Context.current().sleep(100);
          } catch (err) {
            sawCancel = true;
            throw err;
          }
        }
      },
    },
    async (id) => {
      await new Promise((r) => setTimeout(r, 1500));
      await env.client.workflow.getHandle(id).cancel();
    },
  );
  expect(error).toBeInstanceOf(WorkflowFailedError);
  expect(sawCancel).toBe(true);
  const description = await env.client.workflow.getHandle(workflowId).describe();
  expect(description.status.name).toBe('CANCELLED');
  expect(description.typedSearchAttributes.get(WmssStatus)).toBe('cancelled');
});

test('an invalid config fails with InvalidConfig naming the field', async () => {
  const workflowId = `wf-invalid-${Date.now()}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: 'wmss',
    workflowBundle: bundle,
    activities: {},
  });
  await worker.runUntil(async () => {
    const handle = await env.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: 'wmss',
      workflowId,
      args: [{ runName: 'x', runDir: '/r', baseModel: '/b', dataFile: '/d', joint: { fusionLambda: 2 } }],
    });
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as ApplicationFailure;
    expect(cause.type).toBe(ErrorTypes.InvalidConfig);
    expect(cause.message).toMatch(/joint\.fusionLambda/);
  });
});

test('baseline.sft adds step 5c: after 1 and 3, beside 5a/5b, and evaluated in step 7', async () => {
  let evalDeps: string[] = [];
  const { events, error } = await runWith(
    'baseline',
    {
      evaluate: async (input) => {
        evalDeps = Object.keys(input.deps).sort();
      },
    },
    undefined,
    undefined,
    { baseline: { sft: true } },
  );
  expect(error).toBeUndefined();
  expect(events.filter((e) => e.step === 'continuedSft' && e.at === 'start')).toHaveLength(1);
  expect(startOf(events, 'continuedSft')).toBeGreaterThanOrEqual(
    Math.max(endOf(events, 'sft'), endOf(events, 'merge')),
  );
  // the baseline arm does not wait for the fused model: it overlaps 5a and 5b
  expect(startOf(events, 'continuedSft')).toBeLessThan(endOf(events, 'joint'));
  expect(startOf(events, 'evaluate')).toBeGreaterThanOrEqual(endOf(events, 'continuedSft'));
  expect(evalDeps).toEqual(['continuedSft', 'extract', 'sft', 'snapshot']);
  // off by default: the run of the first test has no step 5c
  expect(activeSteps(config('x')).some((r) => r.id === 'continuedSft')).toBe(false);
});
