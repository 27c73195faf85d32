/**
 * Payloads stay far below Temporal's limits (2 MB a payload, 50 MB a history) whatever the size
 * of the data: the real workflow runs on a local dev server over a 100,000-row data set, with the
 * real step 3 (mergeAndWeight: join, weights, resample over all 100k rows) and the real run dir
 * lock; the kernel steps are stubs, except that both entropy steps write a real 100k-row entropy
 * file, as the kernel would. The history must hold paths, digests and metrics only: its size
 * (from `describe`) and its largest payload are checked and written to
 * .wmss/test-reports/large-data.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { cpuSteps } from '../../activities/cpuSteps';
import { withHost } from '../../activities/hostContext';
import { REPO_ROOT } from '../../activities/repoPaths';
import { runLockActivities } from '../../activities/runLock';
import { withResolvedPaths } from '../../activities/runPaths';
import * as A from '../../pipeline/artifacts';
import { RunConfig } from '../../pipeline/config';
import { STEPS, type StepInput, type StepResult } from '../../pipeline/steps';
import { WORKFLOW_TYPE, type PipelineResult } from '../../pipeline/workflowApi';
import { startLocalEnv } from './localEnv';

jest.setTimeout(300_000);

const ROWS = 100_000;
let env: TestWorkflowEnvironment;
let workflowBundle: WorkflowBundleWithSourceMap;
let dir: string;

beforeAll(async () => {
  ({ env, bundle: workflowBundle } = await startLocalEnv());
  dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-large-'));
});

afterAll(async () => {
  await env?.teardown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** `n` JSONL lines, written in one go. */
function writeJsonl(file: string, n: number, line: (i: number) => string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(line(i));
  writeFileSync(file, `${parts.join('\n')}\n`);
}

test(`the workflow over a ${ROWS.toLocaleString('en')}-row data set keeps its history small`, async () => {
  const dataFile = path.join(dir, 'train.jsonl');
  writeJsonl(dataFile, ROWS, (i) =>
    JSON.stringify({
      idx: i,
      messages: [
        { role: 'user', content: `What is ${i} + ${i % 97}?` },
        { role: 'assistant', content: `<think>add</think> The answer is ${i + (i % 97)}.` },
      ],
    }),
  );
  const config = RunConfig.parse({
    runName: 'large-data',
    runDir: path.join(dir, 'run'),
    baseModel: path.join(dir, 'no-model'),
    dataFile,
  });

  // kernel steps: stubs; the two entropy steps write what the kernel would (one row per record)
  const stub = async (input: StepInput): Promise<StepResult> => {
    const outputs: Record<string, string> = { checkpoint: 'x', model: 'm', fused: 'f', dir: 'd' };
    if (input.stepId === 'entropy0' || input.stepId === 'entropy1') {
      const [file, field] = input.stepId === 'entropy0' ? [A.ENTROPY_0, 'entropy_0'] : [A.ENTROPY_1, 'entropy_1'];
      const shift = input.stepId === 'entropy0' ? 0 : 0.25;
      writeJsonl(
        path.join(input.config.runDir, file),
        ROWS,
        (i) => `{"idx":${i},"${field}":${(((i * 7919) % 1000) / 400 + shift).toFixed(6)}}`,
      );
      outputs.entropy = file;
    }
    return {
      stepId: input.stepId,
      host: 'test',
      cached: false,
      outputs,
      metrics: input.stepId === 'evaluate' ? { 'pass_at_1/wmss/gsm8k': 0.5 } : { rows: ROWS },
      cacheKey: `${input.stepId}-key`,
      durationMs: 1,
    };
  };
  const stubs = Object.fromEntries(STEPS.map((s) => [s.activity, stub]));
  // the real step 3 and the real run dir lock, as the control worker runs them
  const real = withHost('test', {
    ...withResolvedPaths({ mergeAndWeight: cpuSteps().mergeAndWeight }),
    ...runLockActivities(),
  });
  const activities = { ...stubs, ...real };
  const workers = await Promise.all(
    ['wmss', 'wmss-gpu'].map((taskQueue) =>
      Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle,
        activities,
        maxConcurrentActivityTaskExecutions: 10,
      }),
    ),
  );

  const t0 = Date.now();
  const runs = workers.map((w) => w.run());
  let result: PipelineResult;
  let description: Awaited<ReturnType<ReturnType<typeof env.client.workflow.getHandle>['describe']>>;
  let history: Awaited<ReturnType<ReturnType<typeof env.client.workflow.getHandle>['fetchHistory']>>;
  try {
    const handle = await env.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: 'wmss',
      workflowId: `large-data-${Date.now()}`,
      args: [config],
    });
    result = (await handle.result()) as PipelineResult;
    description = await handle.describe();
    history = await handle.fetchHistory();
  } finally {
    workers.forEach((w) => w.shutdown());
    await Promise.all(runs);
  }
  const seconds = (Date.now() - t0) / 1000;

  // step 3 really read and resampled all rows
  expect(result.steps.merge.cached).toBe(false);
  expect(result.steps.merge.metrics).toMatchObject({ records: ROWS, entropyRows: ROWS, draws: ROWS, written: ROWS });

  const historyBytes = Number(description.raw.workflowExecutionInfo!.historySizeBytes);
  const payloads = history.events!.flatMap((e) =>
    [
      e.workflowExecutionStartedEventAttributes?.input,
      e.activityTaskScheduledEventAttributes?.input,
      e.activityTaskCompletedEventAttributes?.result,
      e.workflowExecutionCompletedEventAttributes?.result,
    ].flatMap((p) => p?.payloads ?? []),
  );
  const largestPayload = Math.max(...payloads.map((p) => p.data?.length ?? 0));
  const dataBytes = ROWS * 100;
  // paths, digests and metrics: kilobytes, not a trace of the 100k rows (about 10 MB of data)
  expect(historyBytes).toBeGreaterThan(0);
  expect(historyBytes).toBeLessThan(200_000);
  expect(largestPayload).toBeLessThan(16_000);
  expect(JSON.stringify(history)).not.toContain('The answer is 12345');
  // payload data is bytes (base64 in the JSON above): no data row in any of them either
  expect(
    payloads
      .map((p) => Buffer.from(p.data ?? []).toString('utf8'))
      .filter((text) => text.includes('The answer is 12345')),
  ).toEqual([]);

  const report = {
    test: 'largeData',
    rows: ROWS,
    dataBytesApprox: dataBytes,
    historyBytes,
    historyEvents: Number(description.historyLength),
    largestPayloadBytes: largestPayload,
    seconds,
    date: new Date().toISOString(),
  };
  const reports = path.join(REPO_ROOT, '.wmss', 'test-reports');
  mkdirSync(reports, { recursive: true });
  writeFileSync(path.join(reports, 'large-data.json'), `${JSON.stringify(report, null, 2)}\n`);
  console.log(
    `${ROWS} rows: history ${historyBytes} bytes in ${report.historyEvents} events, largest payload ${largestPayload} bytes (${seconds.toFixed(1)} s)`,
  );
});
