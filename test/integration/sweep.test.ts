/**
 * A two-point λ sweep on a real dev server with real workers and the tiny model: the parent runs
 * one child pipeline per point; the second point's steps 0–4 are cache hits of the first's outputs
 * (asserted from both run dirs' manifests and from the children's histories), its λ-dependent
 * steps run; the results are aggregated and the sweep report has its statistics and λ chart.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { readManifest } from '../../activities/store/manifest';
import { startSweep } from '../../client/commands/startSweep';
import { writeSweepReport } from '../../client/report/sweepReport';
import { checkSweepSpec } from '../../pipeline/sweep';
import type { SweepProgress, SweepResult } from '../../pipeline/sweepApi';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { startHarness, tinyRunConfig, type Harness } from '../../testkit/harness';

jest.setTimeout(900_000);

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
}, 300_000);
afterAll(async () => {
  await h?.stop();
});

const SHARED = ['entropy0', 'sft', 'snapshot', 'entropy1', 'merge'];

test('a two-point λ sweep shares steps 0–4 as cache hits and aggregates', async () => {
  const sweepDir = path.join(h.dir, 'sweep');
  const { runName: _n, runDir: _d, ...base } = tinyRunConfig(h.assets, path.join(h.dir, 'unused'), 'unused');
  const spec = checkSweepSpec({
    sweepName: 'it-lambda',
    sweepDir,
    config: base,
    grid: { 'joint.fusionLambda': [0.3, 0.7] },
  }).spec;
  const handle = (await startSweep(h.client, spec)) as WorkflowHandle;
  const result = (await handle.result()) as SweepResult;

  expect(result.status).toBe('completed');
  expect(result.shared).toEqual(SHARED);
  expect(result.points.map((p) => [p.name, p.state, p.overrides])).toEqual([
    ['p0', 'completed', { 'joint.fusionLambda': 0.3 }],
    ['p1', 'completed', { 'joint.fusionLambda': 0.7 }],
  ]);
  const [p0, p1] = result.points;
  expect(p1.seeded).toEqual(SHARED);
  // the query answers the grid after the end too
  const progress = await handle.query<SweepProgress>('sweep');
  expect(progress.points.map((p) => p.state)).toEqual(['completed', 'completed']);

  // manifests: p1's records of steps 0–4 are the leader's (same key, same timings: never re-run in p1)
  for (const id of SHARED) {
    const [m0, m1] = await Promise.all([readManifest(p0.runDir, id), readManifest(p1.runDir, id)]);
    expect(m1?.cacheKey).toBe(m0?.cacheKey);
    expect(m1?.timings).toEqual(m0?.timings);
  }
  // the λ-dependent steps ran in p1 with their own keys
  for (const id of ['fuse', 'joint', 'extract', 'evaluate']) {
    const [m0, m1] = await Promise.all([readManifest(p0.runDir, id), readManifest(p1.runDir, id)]);
    expect(m1?.cacheKey).toBeDefined();
    expect(m1?.cacheKey).not.toBe(m0?.cacheKey);
  }
  // shared outputs are hard links of the leader's: one copy on disk
  const sft0 = (await readManifest(p0.runDir, 'sft'))!;
  const weights = sft0.outputs.checkpoint.files!.find((f) => f.path.endsWith('.safetensors'))!;
  const at = (dir: string) => statSync(path.join(dir, sft0.outputs.checkpoint.path, weights.path));
  expect(at(p1.runDir).ino).toBe(at(p0.runDir).ino);

  // history: each child's result (recorded in its history) says which steps were cache hits
  const resultOf = async (id: string) => (await h.client.workflow.getHandle(id).result()) as PipelineResult;
  const [r0, r1] = await Promise.all([resultOf(p0.workflowId), resultOf(p1.workflowId)]);
  for (const id of SHARED) {
    expect([id, r0.steps[id].cached]).toEqual([id, false]);
    expect([id, r1.steps[id].cached]).toEqual([id, true]);
  }
  for (const id of ['fuse', 'joint', 'extract', 'evaluate']) expect([id, r1.steps[id].cached]).toEqual([id, false]);
  // the parent's history: p1 was seeded once the leader had finished the shared steps, and
  // started while the leader was still in its own λ-dependent steps
  const events = (await handle.fetchHistory()).events ?? [];
  const completed = (activity: string) => {
    const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activity);
    return events.findIndex(
      (e) => String(e.activityTaskCompletedEventAttributes?.scheduledEventId ?? '') === String(scheduled?.eventId),
    );
  };
  const child = (kind: 'Started' | 'Completed', id: string) =>
    events.findIndex(
      (e) =>
        (kind === 'Started'
          ? e.childWorkflowExecutionStartedEventAttributes
          : e.childWorkflowExecutionCompletedEventAttributes
        )?.workflowExecution?.workflowId === id,
    );
  // p0's run signalled each shared step finished before p1's seeding was scheduled
  const seedScheduled = events.findIndex(
    (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'seedPointRunDir',
  );
  const signalled = events
    .slice(0, seedScheduled)
    .filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'stepFinished');
  expect(signalled.length).toBeGreaterThanOrEqual(SHARED.length);
  expect(seedScheduled).toBeGreaterThan(child('Started', p0.workflowId));
  expect(child('Started', p1.workflowId)).toBeGreaterThan(completed('seedPointRunDir'));
  expect(child('Completed', p0.workflowId)).toBeGreaterThan(child('Started', p1.workflowId));

  // aggregate and report
  const aggregate = JSON.parse(readFileSync(path.join(sweepDir, 'sweep.json'), 'utf8'));
  expect(aggregate.points).toHaveLength(2);
  for (const p of aggregate.points) expect(typeof p.accuracy.wmss.arithmetic).toBe('number');
  const files = writeSweepReport(sweepDir);
  const md = readFileSync(files.markdown, 'utf8');
  expect(md).toMatch(
    /Steps shared by all points \(run once, then cache hits\): entropy0, sft, snapshot, entropy1, merge/,
  );
  expect(md).toMatch(/WMSS vs m1/);
  expect(md).toMatch(/McNemar exact/);
  const svg = readFileSync(files.charts[0], 'utf8');
  expect(svg).toMatch(/data-series="WMSS"/);
  expect(existsSync(files.html)).toBe(true);
});
