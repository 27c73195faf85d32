/**
 * Multi-node training groups on the CPU: two fake hosts in one process (as in placement.test.ts),
 * each with a control worker and a GPU worker (--gpus cpu). With placement.nodes {sft: 2} the
 * Stage-1 SFT runs as a group: one activity per host, each starting torchrun --nnodes 2 against
 * the rendezvous host-a offers, gloo between them. A member killed mid-training makes the
 * workflow cancel the other and try the group again, which resumes from the last checkpoint.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, type Worker } from '@temporalio/worker';
import { startPipeline } from '../../client/commands/start';
import { createControlWorkers, createGpuWorkers } from '../../workers/createWorkers';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { faultMarker } from '../../activities/faults';
import { startHarness, tinyRunConfig, type Harness } from '../../testkit/harness';

jest.setTimeout(900_000);

const HOSTS = ['host-a', 'host-b'];
let h: Harness;
const hosts: { workers: Worker[]; running: Promise<void>[]; connection: NativeConnection }[] = [];

beforeAll(async () => {
  // both fake hosts are this machine: member 0's rendezvous is reached on the loopback
  process.env.WMSS_GROUP_ADDRESS = '127.0.0.1';
  h = await startHarness({ workers: false });
  const workflowBundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows') });
  for (const host of HOSTS) {
    // one connection per fake host, as on separate machines (the SDK refuses two workers of one
    // task queue on one connection)
    const connection = await NativeConnection.connect({ address: h.server.address });
    const workers = [
      ...(await createControlWorkers({ connection, host }, { workflowBundle })),
      ...(await createGpuWorkers({ connection, host, devices: { kind: 'cpu' }, threads: 1 })),
    ];
    hosts.push({ workers, running: workers.map((w) => w.run()), connection });
  }
}, 300_000);

afterAll(async () => {
  for (const set of hosts) {
    set.workers.forEach((w) => w.getState() === 'RUNNING' && w.shutdown());
    await Promise.allSettled(set.running);
    await set.connection.close();
  }
  delete process.env.WMSS_GROUP_ADDRESS;
  delete process.env.WMSS_FAULT_KERNEL;
  await h?.stop();
});

const config = (name: string) =>
  tinyRunConfig(h.assets, path.join(h.dir, name), name, {
    sft: {
      lr: 3e-3,
      microBatch: 8,
      gradAccum: 2,
      maxLength: 96,
      maxSteps: 4,
      saveEvery: 1,
      gradientCheckpointing: false,
    },
    joint: {
      lr: 3e-3,
      microBatch: 8,
      gradAccum: 2,
      maxLength: 96,
      maxSteps: 2,
      saveEvery: 0,
      gradientCheckpointing: false,
    },
    eval: {
      baselines: false,
      batchSize: 32,
      benchmarks: [
        {
          name: 'arithmetic',
          path: path.join(h.assets, 'data', 'test.jsonl'),
          format: 'gsm8k',
          maxInputTokens: 256,
          maxNewTokens: 8,
          limit: 4,
        },
      ],
    },
    placement: { storage: 'shared', nodes: { sft: 2 }, groupHosts: HOSTS, hostTimeout: '5m' },
  });

interface Task {
  activityId: string;
  queue: string;
  summary: string;
  identity?: string;
  outcome?: 'completed' | 'failed' | 'canceled';
}

/** The activity tasks of the sft group in the history: queue, summary, who started it, how it ended. */
async function sftTasks(handle: WorkflowHandle): Promise<Task[]> {
  const history = await handle.fetchHistory();
  const tasks = new Map<number, Task>();
  for (const event of history.events ?? []) {
    const id = Number(event.eventId);
    const s = event.activityTaskScheduledEventAttributes;
    if (s && s.activityId!.startsWith('sft'))
      tasks.set(id, {
        activityId: s.activityId!,
        queue: s.taskQueue!.name!,
        summary: String(
          event.userMetadata?.summary?.data ? Buffer.from(event.userMetadata.summary.data).toString() : '',
        ),
      });
    const t = event.activityTaskStartedEventAttributes;
    if (t && tasks.has(Number(t.scheduledEventId))) tasks.get(Number(t.scheduledEventId))!.identity = t.identity!;
    const ended = [
      ['completed', event.activityTaskCompletedEventAttributes],
      ['failed', event.activityTaskFailedEventAttributes],
      ['canceled', event.activityTaskCanceledEventAttributes],
    ] as const;
    for (const [outcome, attrs] of ended)
      if (attrs && tasks.has(Number(attrs.scheduledEventId)))
        tasks.get(Number(attrs.scheduledEventId))!.outcome = outcome;
  }
  return [...tasks.values()];
}

test('a two-member group on two hosts runs Stage-1 SFT as one torchrun world', async () => {
  const handle = await startPipeline(h.client, config('group'));
  const result = (await handle.result()) as PipelineResult;
  expect(result.steps.sft.metrics).toMatchObject({ world_size: 2, steps: 4, resumed_from_step: 0 });

  const tasks = await sftTasks(handle);
  expect(tasks.map((t) => `${t.activityId} ${t.queue} ${t.outcome}`)).toEqual([
    'sft wmss-gpu@host-a completed',
    'sft.member-1 wmss-gpu@host-b completed',
  ]);
  expect(tasks[0].identity).toMatch(/^gpu\[cpu\]@host-a\//);
  expect(tasks[1].identity).toMatch(/^gpu\[cpu\]@host-b\//);
  expect(tasks[1].summary).toMatch(/step 1 · .* · group member 2\/2 on host-b \(try 1\)/);
  // each member's kernel log: node rank 1 ran global rank 1 of 2
  const log = readFileSync(path.join(h.dir, 'group', 'logs', 'sft.node-1-of-2.try-1.log'), 'utf8');
  expect(log.length).toBeGreaterThan(0);
});

test('a member killed mid-training: the other is cancelled and the group retries and completes', async () => {
  process.env.WMSS_FAULT_KERNEL = 'sft.member-1:die-mid-training';
  try {
    const handle = await startPipeline(h.client, config('killed'));
    const result = (await handle.result()) as PipelineResult;
    const runDir = path.join(h.dir, 'killed');
    expect(existsSync(faultMarker(runDir, 'sft.member-1', 'die-mid-training'))).toBe(true);
    // the second try resumed from checkpoint-1 (saveEvery 1; the kill came as step 2 ended)
    expect(result.steps.sft.metrics).toMatchObject({ world_size: 2, steps: 4, resumed_from_step: 1 });

    const tasks = await sftTasks(handle);
    const outcomes = tasks.map((t) => `${t.activityId} ${t.outcome}`);
    expect(outcomes.slice(-2)).toEqual(['sft completed', 'sft.member-1 completed']);
    expect(outcomes).toContain('sft.member-1 failed');
    // member 0 of the first try ended with it (cancelled, or failed on its own when its peer vanished)
    expect(['sft canceled', 'sft failed']).toContain(outcomes[0]);
    expect(tasks.at(-1)!.summary).toMatch(/\(try 2\)/);
  } finally {
    delete process.env.WMSS_FAULT_KERNEL;
  }
});
