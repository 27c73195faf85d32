/**
 * Multi-node training groups in the workflow (workflows/trainingGroup.ts) with stub activities on
 * a local dev server: the rendezvous on member 0's host queue, one member per host queue, the
 * group retried as one after a member fails (the other cancelled first), a host without a worker
 * as HostUnavailable, and a non-retryable failure not retried. The real kernels under torchrun
 * are exercised by test/integration/trainingGroups.test.ts.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { RunConfig } from '../../pipeline/config';
import { ErrorTypes } from '../../pipeline/errors';
import { STEPS, type StepInput, type StepResult } from '../../pipeline/steps';
import { WORKFLOW_TYPE } from '../../pipeline/workflowApi';
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

const config = (runName: string, hostTimeout = '1m', heartbeatSeconds?: number) =>
  RunConfig.parse({
    runName,
    runDir: `/tmp/wmss-wf-groups-${runName}`,
    baseModel: '/models/base',
    dataFile: '/data/train.jsonl',
    placement: { nodes: { sft: 2 }, groupHosts: ['host-a', 'host-b'], hostTimeout },
    timeouts: { heartbeatSeconds },
  });

/** What the sft stub of a member does: succeed after a moment, or fail / hang until cancelled. */
type Member = (input: StepInput & { group: NonNullable<StepInput['group']> }) => Promise<void>;

interface Seen {
  rendezvous: string[];
  members: { host: string; index: number; attempt: number; port: number; outcome: string }[];
}

/** Runs the pipeline with stub activities; the sft stub of each member is `member`. */
async function runWith(
  runName: string,
  member: Member,
  opts: { hosts?: string[]; hostTimeout?: string; heartbeatSeconds?: number } = {},
) {
  const seen: Seen = { rendezvous: [], members: [] };
  let port = 40_000;
  const result = (input: StepInput, host: string): StepResult => ({
    stepId: input.stepId,
    host,
    cached: false,
    outputs: { checkpoint: 'x', model: 'm', fused: 'f', positions: 'p' },
    metrics: {},
    cacheKey: `${input.stepId}-key`,
    durationMs: 1,
  });
  const activitiesOf = (host: string) => {
    const steps = Object.fromEntries(
      STEPS.map((s) => [
        s.activity,
        async (input: StepInput) => {
          if (input.group) {
            const record = { host, ...input.group, outcome: 'started' };
            seen.members.push(record);
            try {
              await member(input as Parameters<Member>[0]);
              record.outcome = 'completed';
            } catch (err) {
              record.outcome = err instanceof ApplicationFailure ? `failed ${err.type}` : 'cancelled';
              throw err;
            }
          }
          return result(input, host);
        },
      ]),
    );
    return {
      ...steps,
      groupRendezvous: async () => {
        seen.rendezvous.push(host);
        return { address: `${host}.cluster`, port: ++port };
      },
      lockRunDir: async (i: { runDir: string }) => ({ runDir: i.runDir, generation: 1, host }),
      unlockRunDir: async () => true,
    };
  };
  const queues = [
    ['wmss', 'host-a'],
    ['wmss-gpu', 'host-a'],
    ...(opts.hosts ?? ['host-a', 'host-b']).map((host) => [`wmss-gpu@${host}`, host]),
  ];
  const workers = await Promise.all(
    queues.map(([taskQueue, host]) =>
      Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: bundle,
        activities: activitiesOf(host),
        maxConcurrentActivityTaskExecutions: 10,
        maxHeartbeatThrottleInterval: '1s',
      }),
    ),
  );
  const runs = workers.map((w) => w.run());
  let error: unknown;
  try {
    const handle = await env.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: 'wmss',
      workflowId: `wf-groups-${runName}-${Date.now()}`,
      args: [config(runName, opts.hostTimeout, opts.heartbeatSeconds)],
    });
    await handle.result();
  } catch (err) {
    error = err;
  } finally {
    workers.forEach((w) => w.shutdown());
    await Promise.all(runs);
  }
  return { seen, error };
}

/** Heartbeats until the activity is cancelled (as a kernel bridge does), then rethrows the cancellation. */
async function untilCancelled(): Promise<never> {
  const ctx = Context.current();
  const beat = setInterval(() => ctx.heartbeat(), 200);
  try {
    return await ctx.cancelled;
  } finally {
    clearInterval(beat);
  }
}

const briefly = () => new Promise<void>((r) => setTimeout(r, 200));

test('one member per host, all with the rendezvous member 0 offered', async () => {
  const { seen, error } = await runWith('ok', briefly);
  expect(error).toBeUndefined();
  expect(seen.rendezvous).toEqual(['host-a']);
  expect(seen.members.map((m) => `${m.index}@${m.host} try ${m.attempt}: ${m.outcome}`).sort()).toEqual([
    '0@host-a try 1: completed',
    '1@host-b try 1: completed',
  ]);
  expect(new Set(seen.members.map((m) => m.port))).toEqual(new Set([40_001]));
});

test('a member that fails cancels the others, and the group is tried again as one', async () => {
  const { seen, error } = await runWith('retry', async ({ group }) => {
    if (group.attempt > 1) return briefly();
    if (group.index === 0) return untilCancelled();
    await briefly();
    throw ApplicationFailure.create({ type: ErrorTypes.RankLost, message: 'rank 1 died (SIGKILL)' });
  });
  expect(error).toBeUndefined();
  expect(seen.rendezvous).toEqual(['host-a', 'host-a']); // a new rendezvous (port) per try
  expect(seen.members.map((m) => `${m.index} try ${m.attempt}: ${m.outcome}`).sort()).toEqual([
    '0 try 1: cancelled',
    '0 try 2: completed',
    '1 try 1: failed RankLost',
    '1 try 2: completed',
  ]);
  expect(seen.members.find((m) => m.attempt === 2)!.port).toBe(40_002);
});

test('a host without a GPU worker: HostUnavailable naming it, the other member cancelled', async () => {
  const { seen, error } = await runWith('nohost', () => untilCancelled(), { hosts: ['host-a'], hostTimeout: '3s' });
  expect(error).toBeInstanceOf(WorkflowFailedError);
  const cause = (error as WorkflowFailedError).cause as ApplicationFailure;
  expect(cause.type).toBe(ErrorTypes.HostUnavailable);
  expect(cause.message).toMatch(/group member 1\) must run on host host-b.*wmss-gpu@host-b/);
  expect(seen.members.map((m) => `${m.index}@${m.host}: ${m.outcome}`)).toEqual(['0@host-a: cancelled']);
});

test('a failure a retry cannot fix fails the group at once', async () => {
  const { seen, error } = await runWith('invalid', async ({ group }) => {
    if (group.index === 0) return untilCancelled();
    throw ApplicationFailure.create({ type: ErrorTypes.InvalidInput, nonRetryable: true, message: 'bad data' });
  });
  expect(((error as WorkflowFailedError).cause as ApplicationFailure).type).toBe(ErrorTypes.InvalidInput);
  expect(seen.members.map((m) => `${m.index} try ${m.attempt}: ${m.outcome}`).sort()).toEqual([
    '0 try 1: cancelled',
    '1 try 1: failed InvalidInput',
  ]);
});

test('a member whose host goes silent (no heartbeat) is a lost rank: the others are cancelled, the group retries', async () => {
  let failure: string | undefined;
  const { seen, error } = await runWith(
    'silent',
    async ({ group }) => {
      if (group.attempt > 1) return briefly();
      if (group.index === 0)
        return untilCancelled().catch((err) => {
          failure = 'cancelled';
          throw err;
        });
      // no heartbeat: as a worker that died with its host; ends on its own after the timeout
      await new Promise((r) => setTimeout(r, 18_000));
    },
    { heartbeatSeconds: 15 },
  );
  expect(error).toBeUndefined();
  expect(failure).toBe('cancelled');
  expect(
    seen.members
      .filter((m) => m.attempt === 2)
      .map((m) => `${m.index}: ${m.outcome}`)
      .sort(),
  ).toEqual(['0: completed', '1: completed']);
});
