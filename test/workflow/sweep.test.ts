/**
 * The sweep workflow (workflows/wmssSweep.ts) on a local dev server with stub activities: the
 * leader first, the others seeded and side by side, a seeds × λ grid seeded point from point, a failed point not stopping the others, a
 * seeded step that re-ran marking its point failed, all points failed failing the sweep, and a
 * bad spec refused naming the field. The real activities run in test/integration/sweep.test.ts.
 */
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { SeedInput, SweepAggregate } from '../../activities/contract';
import { STEPS, type StepInput, type StepResult } from '../../pipeline/steps';
import { SWEEP_WORKFLOW_TYPE, sweepQuery, type SweepResult } from '../../pipeline/sweepApi';
import { startLocalEnv } from './localEnv';

jest.setTimeout(180_000);

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;
beforeAll(async () => {
  ({ env, bundle } = await startLocalEnv());
});
afterAll(async () => {
  await env?.teardown();
});

const SHARED = ['entropy0', 'sft', 'snapshot', 'entropy1', 'merge'];
const spec = (name: string, lambdas: unknown[]) => ({
  sweepName: name,
  sweepDir: `/tmp/wmss-sweep-wf/${name}`,
  config: { baseModel: '/models/base', dataFile: '/data/train.jsonl' },
  grid: { 'joint.fusionLambda': lambdas },
});

interface Log {
  t: number;
  what: string;
}

/** Runs a sweep with stub activities; `step` may throw or mark a result not cached for a point. */
async function sweepWith(
  raw: unknown,
  step: (point: string, id: string) => Partial<StepResult> | void = () => undefined,
) {
  const log: Log[] = [];
  const aggregates: SweepAggregate[] = [];
  const seededSteps = new Map<string, string[]>();
  const pointOf = (runDir: string) => runDir.split('/').pop()!;
  const make = async (input: StepInput): Promise<StepResult> => {
    const point = pointOf(input.config.runDir);
    log.push({ t: Date.now(), what: `${point} ${input.stepId} start` });
    // the leader's joint training is slow: the other points must not wait for it
    await new Promise((r) => setTimeout(r, point === 'p0' && input.stepId === 'joint' ? 3000 : 150));
    const extra = step(point, input.stepId) ?? {};
    log.push({ t: Date.now(), what: `${point} ${input.stepId} end` });
    return {
      stepId: input.stepId,
      host: 'test',
      // what the real store does with a seeded dir: the seeded steps are hits
      cached: (seededSteps.get(point) ?? []).includes(input.stepId),
      outputs: { checkpoint: 'x', model: 'm', fused: 'f', positions: 'p' },
      metrics: {},
      cacheKey: `${input.stepId}-key`,
      durationMs: 1,
      ...extra,
    };
  };
  const activities = {
    ...Object.fromEntries(STEPS.map((s) => [s.activity, make])),
    lockRunDir: async (i: { runDir: string }) => ({ runDir: i.runDir, generation: 1, host: 'test' }),
    unlockRunDir: async () => true,
    seedPointRunDir: async (i: SeedInput) => {
      log.push({ t: Date.now(), what: `${pointOf(i.to)} seeded from ${pointOf(i.from)}` });
      seededSteps.set(pointOf(i.to), [...(seededSteps.get(pointOf(i.to)) ?? []), ...i.steps]);
      return { seeded: i.steps, kept: [] };
    },
    aggregateSweep: async (i: SweepAggregate) => {
      aggregates.push(i);
      return `${i.sweepDir}/sweep.json`;
    },
  };
  const workers = await Promise.all(
    ['wmss', 'wmss-gpu'].map((taskQueue) =>
      Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: bundle,
        activities,
        maxConcurrentActivityTaskExecutions: 20,
      }),
    ),
  );
  const runs = workers.map((w) => w.run());
  let result: SweepResult | undefined;
  let error: unknown;
  let memo: Record<string, unknown> | undefined;
  try {
    const handle = await env.client.workflow.start(SWEEP_WORKFLOW_TYPE, {
      taskQueue: 'wmss',
      workflowId: `sweep-${Date.now()}-${Math.random()}`,
      args: [raw],
    });
    result = (await handle.result()) as SweepResult;
    memo = (await handle.describe()).memo;
    expect((await handle.query(sweepQuery)).points.length).toBe(result.points.length);
  } catch (err) {
    error = err;
  } finally {
    workers.forEach((w) => w.shutdown());
    await Promise.all(runs);
  }
  const at = (what: string) => log.find((l) => l.what === what)?.t ?? NaN;
  return { log, at, aggregates, result, error, memo };
}

test('the shared steps run first in the leader; the others are seeded with them and run beside it', async () => {
  const { result, at, aggregates, memo, error } = await sweepWith(spec('order', [0.3, 0.5, 0.7]));
  expect(error).toBeUndefined();
  expect(result!.shared).toEqual(SHARED);
  expect(result!.points.map((p) => [p.name, p.state, p.seeded ?? []])).toEqual([
    ['p0', 'completed', []],
    ['p1', 'completed', SHARED],
    ['p2', 'completed', SHARED],
  ]);
  for (const id of SHARED) expect(at('p1 seeded from p0')).toBeGreaterThanOrEqual(at(`p0 ${id} end`));
  expect(at('p1 fuse start')).toBeGreaterThanOrEqual(at('p1 seeded from p0'));
  // …but not for the leader's own λ-dependent steps
  expect(at('p1 fuse start')).toBeLessThan(at('p0 joint end'));
  // p1 and p2 overlap
  expect(at('p2 fuse start')).toBeLessThan(at('p1 evaluate end'));
  expect(aggregates).toHaveLength(1);
  expect(aggregates[0].points.map((p) => p.state)).toEqual(['completed', 'completed', 'completed']);
  expect(memo?.grid).toEqual([
    'p0 {"joint.fusionLambda":0.3}: completed',
    'p1 {"joint.fusionLambda":0.5}: completed, seeded from p0',
    'p2 {"joint.fusionLambda":0.7}: completed, seeded from p0',
  ]);
});

test("seeds × λ: each seed's first point takes steps 0 and 4 from p0, its other λ values take 0–4 and 5c from it", async () => {
  const raw = {
    ...spec('grid', []),
    config: { baseModel: '/models/base', dataFile: '/data/train.jsonl', baseline: { sft: true } },
    grid: { seed: [1, 2], 'joint.fusionLambda': [0.3, 0.7] },
  };
  const { result, at, log, error } = await sweepWith(raw);
  expect(error).toBeUndefined();
  const perSeed = [...SHARED, 'continuedSft'];
  expect(result!.shared).toEqual(['entropy0', 'snapshot']);
  expect(result!.points.map((p) => [p.name, p.state, p.seededFrom ?? null, p.seeded ?? []])).toEqual([
    ['p0', 'completed', null, []],
    ['p1', 'completed', ['p0'], perSeed],
    ['p2', 'completed', ['p0'], ['entropy0', 'snapshot']],
    ['p3', 'completed', ['p2'], perSeed],
  ]);
  // a point starts its run only once it is seeded (the stub steps run whether seeded or not)
  for (const p of ['p1', 'p2', 'p3'])
    expect(at(`${p} entropy0 start`)).toBeGreaterThanOrEqual(log.find((l) => l.what.startsWith(`${p} seeded`))!.t);
  // p2 does not wait for p0's seed-1 steps, p3 waits for p2's
  expect(at('p2 seeded from p0')).toBeGreaterThanOrEqual(at('p0 snapshot end'));
  expect(at('p2 seeded from p0')).toBeLessThan(at('p0 continuedSft end'));
  expect(at('p3 seeded from p2')).toBeGreaterThanOrEqual(at('p2 continuedSft end'));
});

test('a point with two sources waits for both and is seeded from each', async () => {
  const raw = {
    ...spec('twosources', []),
    config: { baseModel: '/models/base', dataFile: '/data/train.jsonl', baseline: { sft: true } },
    grid: { 'joint.promptFormat': ['conversation', 'stage1'], 'joint.fusionLambda': [0.3, 0.7] },
  };
  const { result, at, error } = await sweepWith(raw);
  expect(error).toBeUndefined();
  expect(result!.points[3].seededFrom).toEqual(['p1', 'p2']);
  expect(result!.points[3].seeded).toEqual([...SHARED, 'fuse', 'continuedSft']);
  expect(at('p3 seeded from p1')).toBeGreaterThanOrEqual(at('p1 fuse end'));
  expect(at('p3 seeded from p2')).toBeGreaterThanOrEqual(at('p2 continuedSft end'));
  expect(result!.points.every((p) => p.state === 'completed')).toBe(true);
});

test('a failed point does not stop the others; the sweep completes and aggregates what finished', async () => {
  const { result, error } = await sweepWith(spec('onefails', [0.3, 0.5, 0.7]), (point, id) => {
    if (point === 'p1' && id === 'joint')
      throw ApplicationFailure.create({ type: 'InvalidInput', nonRetryable: true, message: 'bad joint' });
  });
  expect(error).toBeUndefined();
  expect(result!.points.map((p) => p.state)).toEqual(['completed', 'failed', 'completed']);
  expect(result!.points[1].error).toMatch(/bad joint/);
});

test('a donor that fails before the shared steps are done gives what it finished; the point computes the rest', async () => {
  const { result, error } = await sweepWith(spec('donorfails', [0.3, 0.7]), (point, id) => {
    if (point === 'p0' && id === 'merge')
      throw ApplicationFailure.create({ type: 'InvalidInput', nonRetryable: true, message: 'bad merge' });
  });
  expect(error).toBeUndefined();
  expect(result!.points.map((p) => p.state)).toEqual(['failed', 'completed']);
  expect(result!.points[1].seededFrom).toEqual(['p0']);
  expect(result!.points[1].seeded).toEqual(expect.arrayContaining(['entropy0', 'sft', 'snapshot']));
  expect(result!.points[1].seeded).not.toContain('merge');
});

test('a seeded step that came back as a fresh run marks its point failed, naming STEP_READS', async () => {
  const { result } = await sweepWith(spec('reran', [0.3, 0.7]), (point, id) =>
    point === 'p1' && id === 'sft' ? { cached: false } : undefined,
  );
  expect(result!.points[1].state).toBe('failed');
  expect(result!.points[1].error).toMatch(/seeded step\(s\) sft were not cache hits: pipeline\/sweep\.ts STEP_READS/);
});

test('when every point fails, the sweep fails after aggregating', async () => {
  const { error, aggregates } = await sweepWith(spec('allfail', [0.3, 0.7]), (_point, id) => {
    if (id === 'evaluate') throw ApplicationFailure.create({ type: 'InvalidInput', nonRetryable: true, message: 'no' });
  });
  expect(error).toBeInstanceOf(WorkflowFailedError);
  expect(String((error as WorkflowFailedError).cause?.message)).toMatch(/every point of sweep allfail failed/);
  expect(aggregates[0].points.map((p) => p.state)).toEqual(['failed', 'failed']);
});

test.each([
  [spec('badkey', [0.3]), { grid: { 'joint.fusionLamda': [0.3] } }, /grid\.joint\.fusionLamda: unknown config field/],
  [spec('empty', [0.3]), { grid: {} }, /grid: empty grid/],
])('a bad spec fails as InvalidConfig naming the field', async (base, extra, message) => {
  const { error, log } = await sweepWith({ ...base, ...extra });
  const cause = (error as WorkflowFailedError).cause as ApplicationFailure;
  expect(cause.type).toBe('InvalidConfig');
  expect(cause.message).toMatch(message);
  expect(log).toEqual([]);
});
