/**
 * The run's set-up in the workflow (workflows/prepareRun.ts) with stub activities: a config naming
 * a Hugging Face id and MLflow gets one set-up before its steps, the steps read the resolved
 * snapshot dir and its commit, the tracker's URL lands in the memo; a model that cannot be had
 * fails the run before any step starts, typed, and releases the run dir.
 */
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { RunConfig } from '../../pipeline/config';
import { ErrorTypes } from '../../pipeline/errors';
import type { RunSetup } from '../../pipeline/runSetupTypes';
import { WmssBaseModel } from '../../pipeline/searchAttributes';
import { STEPS, type StepInput, type StepResult } from '../../pipeline/steps';
import { WORKFLOW_TYPE, type PipelineResult } from '../../pipeline/workflowApi';
import { startLocalEnv } from './localEnv';

jest.setTimeout(120_000);

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;
beforeAll(async () => ({ env, bundle } = await startLocalEnv()));
afterAll(async () => env?.teardown());

const COMMIT = 'a'.repeat(40);
const SNAPSHOT = `/hf/models--org--tiny/snapshots/${COMMIT}`;
const config = (runName: string) =>
  RunConfig.parse({
    runName,
    runDir: `/tmp/wmss-wf-${runName}`,
    baseModel: 'org/tiny@v1',
    dataFile: '/data/train.jsonl',
    tracking: { mlflow: { trackingUri: 'http://mlflow:5000' } },
  });

async function run(runName: string, setUpRun: (input: { models: Record<string, string> }) => Promise<RunSetup>) {
  const seen: StepInput[] = [];
  const unlocked: string[] = [];
  const step = async (input: StepInput): Promise<StepResult> => {
    seen.push(input);
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
  const activities = {
    ...Object.fromEntries(STEPS.map((s) => [s.activity, step])),
    lockRunDir: async (i: { runDir: string }) => ({ runDir: i.runDir, generation: 1, host: 'test' }),
    unlockRunDir: async (i: { runDir: string }) => unlocked.push(i.runDir) > 0,
    setUpRun,
  };
  const workers = await Promise.all(
    ['wmss', 'wmss-gpu'].map((taskQueue) =>
      Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: bundle, activities }),
    ),
  );
  const workflowId = `wf-${runName}-${Date.now()}`;
  const runs = workers.map((w) => w.run());
  try {
    const handle = await env.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: 'wmss',
      workflowId,
      args: [config(runName)],
    });
    const outcome = await handle.result().then(
      (r) => r as PipelineResult,
      (e: unknown) => e,
    );
    const description = await handle.describe();
    return { seen, unlocked, outcome, description };
  } finally {
    workers.forEach((w) => w.shutdown());
    await Promise.all(runs);
  }
}

test('the steps read the resolved snapshot and its commit; the tracker URL is in the memo', async () => {
  const asked: Record<string, string>[] = [];
  const { seen, outcome, description } = await run('ids', async (input) => {
    asked.push(input.models);
    return {
      models: { baseModel: { id: 'org/tiny', revision: 'v1', commit: COMMIT, path: SNAPSHOT } },
      trackers: { mlflow: { runId: 'r1', url: 'http://mlflow:5000/#/experiments/1/runs/r1' } },
    };
  });
  expect(outcome).not.toBeInstanceOf(Error);
  expect(asked).toEqual([{ baseModel: 'org/tiny@v1' }]);
  expect(seen.length).toBeGreaterThan(0);
  for (const input of seen) {
    expect(input.config.baseModel).toBe(SNAPSHOT);
    expect(input.models?.baseModel).toMatchObject({ id: 'org/tiny', commit: COMMIT });
  }
  expect(description.memo?.tracking).toEqual({ mlflow: 'http://mlflow:5000/#/experiments/1/runs/r1' });
  expect(description.typedSearchAttributes.get(WmssBaseModel)).toBe('org/tiny@v1');
});

test('a model that cannot be had fails the run before any step, typed, and releases the run dir', async () => {
  const { seen, unlocked, outcome } = await run('offline', async () => {
    throw ApplicationFailure.create({
      type: ErrorTypes.ModelUnavailable,
      nonRetryable: true,
      message: 'baseModel org/tiny@v1: not in the cache; fetch it with: hf download org/tiny --revision v1',
    });
  });
  expect(outcome).toBeInstanceOf(WorkflowFailedError);
  const cause = (outcome as WorkflowFailedError).cause as ApplicationFailure;
  expect(cause.type).toBe(ErrorTypes.ModelUnavailable);
  expect(cause.message).toMatch(/^run set-up failed: .*hf download org\/tiny --revision v1/);
  expect(seen).toEqual([]);
  expect(unlocked).toEqual(['/tmp/wmss-wf-offline']);
});
