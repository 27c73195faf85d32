/**
 * Host affinity with local storage, on the CPU: two fake hosts in one process, each with a
 * control worker (wmss + wmss@<host>) and a GPU worker (--gpus cpu: wmss-gpu + wmss-gpu@<host>).
 * Every step must run on the host that holds its inputs (checked in the workflow history: the
 * queue each task was scheduled on and the identity of the worker that started it), and a step
 * pinned to a host whose workers are stopped must fail with HostUnavailable.
 */
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, type Worker } from '@temporalio/worker';
import { startPipeline } from '../../client/commands/start';
import { createControlWorkers, createGpuWorkers } from '../../workers/createWorkers';
import { STEPS, type StepId } from '../../pipeline/steps';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { startHarness, tinyRunConfig, type Harness } from '../../testkit/harness';

jest.setTimeout(900_000);

const HOSTS = ['host-a', 'host-b'];
let h: Harness;
const workers = new Map<string, { workers: Worker[]; running: Promise<void>[]; connection: NativeConnection }>();

beforeAll(async () => {
  h = await startHarness({ workers: false });
  const workflowBundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows') });
  for (const host of HOSTS) {
    // One connection per fake host, as on separate machines: the SDK refuses two workers of one
    // task queue (both hosts poll wmss and wmss-gpu) on one connection.
    const connection = await NativeConnection.connect({ address: h.server.address });
    const set: Worker[] = [];
    workers.set(host, { workers: set, running: [], connection });
    set.push(...(await createControlWorkers({ connection, host }, { workflowBundle })));
    set.push(...(await createGpuWorkers({ connection, host, devices: { kind: 'cpu' }, threads: 1 })));
    workers.get(host)!.running.push(...set.map((w) => w.run()));
  }
}, 300_000);

async function stopHost(host: string): Promise<void> {
  const set = workers.get(host)!;
  set.workers.forEach((w) => w.getState() === 'RUNNING' && w.shutdown());
  await Promise.allSettled(set.running);
  await set.connection.close();
}

afterAll(async () => {
  for (const host of HOSTS) if (workers.has(host)) await stopHost(host);
  await h?.stop();
});

// Small on purpose: placement is under test here, the kernels are covered elsewhere.
const small = (runDir: string, runName: string, placement: Record<string, unknown>) => {
  const training = {
    lr: 3e-3,
    microBatch: 16,
    gradAccum: 2,
    maxLength: 96,
    maxSteps: 2,
    saveEvery: 0,
    gradientCheckpointing: false,
  };
  return tinyRunConfig(h.assets, runDir, runName, {
    sft: training,
    joint: training,
    eval: {
      baselines: false,
      batchSize: 32,
      benchmarks: [
        {
          name: 'arithmetic',
          path: path.join(h.assets, 'data', 'test.jsonl'),
          format: 'gsm8k',
          maxInputTokens: 256,
          maxNewTokens: 16,
          limit: 8,
        },
      ],
    },
    placement: { storage: 'local', ...placement } as never,
  });
};

test('with local storage, every step runs on the host that produced its inputs', async () => {
  const config = small(path.join(h.dir, 'local'), 'it-local', { hostTimeout: '5m' });
  const handle = await startPipeline(h.client, config);
  const result = (await handle.result()) as PipelineResult;

  const ran = Object.keys(result.steps) as StepId[];
  const home = result.steps.sft.host;
  expect(HOSTS).toContain(home);
  for (const id of ran) {
    // StepResult.host: the host of each step is the host of the steps it read
    for (const need of STEPS.find((s) => s.id === id)!.needs.filter((n) => result.steps[n]))
      expect(`${id} on ${result.steps[id].host}`).toBe(`${id} on ${result.steps[need].host}`);
    expect(result.steps[id].host).toBe(home);
  }

  // The history says the same: each step's task went to <queue>@home and a worker of home started it.
  const history = await handle.fetchHistory();
  const scheduled = new Map<number, { activityId: string; queue: string; type: string }>();
  const started: { activityId: string; queue: string; type: string; identity: string }[] = [];
  for (const event of history.events ?? []) {
    const s = event.activityTaskScheduledEventAttributes;
    if (s)
      scheduled.set(Number(event.eventId), {
        activityId: s.activityId!,
        queue: s.taskQueue!.name!,
        type: s.activityType!.name!,
      });
    const t = event.activityTaskStartedEventAttributes;
    if (t) started.push({ ...scheduled.get(Number(t.scheduledEventId))!, identity: t.identity! });
  }
  const runLock = ['lockRunDir', 'unlockRunDir'];
  const steps = started.filter((s) => s.type !== 'workerHost' && !runLock.includes(s.type));
  expect(steps.map((s) => s.activityId).sort()).toEqual([...ran].sort());
  // the run dir lock is taken and released by the control worker of the host that holds the dir
  const lockTasks = started.filter((s) => runLock.includes(s.type));
  expect(lockTasks.map((s) => `${s.type}: ${s.queue}`)).toEqual(runLock.map((t) => `${t}: wmss@${home}`));
  for (const s of steps) {
    expect(`${s.activityId}: ${s.queue}`).toMatch(new RegExp(`^${s.activityId}: wmss(-gpu)?@${home}$`));
    expect(`${s.activityId}: ${s.identity}`).toMatch(new RegExp(`^${s.activityId}: (control|gpu\\[cpu\\])@${home}/`));
  }
  // without placement.host the run went where a free GPU worker answered, and stayed there
  const placement = started.find((s) => s.type === 'workerHost')!;
  expect(placement.identity).toContain(`@${home}/`);
});

test('a step pinned to a host whose workers are gone fails with HostUnavailable and says what to do', async () => {
  await stopHost('host-b');
  workers.delete('host-b');
  const config = small(path.join(h.dir, 'gone'), 'it-gone', { host: 'host-b', hostTimeout: '3s' });
  const handle = await startPipeline(h.client, config);
  const err = await handle.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const cause = (err as WorkflowFailedError).cause as { type?: string; message: string };
  expect(cause.type).toBe('HostUnavailable');
  expect(cause.message).toMatch(/must run on host host-b.*no worker polled task queue wmss(-gpu)?@host-b for 3s/);
  expect(cause.message).toMatch(/Restart that host's worker .*--host host-b.*placement\.storage to "shared"/);
});
