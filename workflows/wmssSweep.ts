/**
 * wmssSweep: one child wmssPipeline per point of a sweep (pipeline/sweep.ts, docs/sweeps.md).
 *
 * The first point (the leader) starts alone; once its run reports the steps all points share as
 * finished, the others start beside it, each in a run dir seeded with the leader's outputs of
 * those steps (activities/sweepActivities.ts), which their own runs find as verified cache hits.
 * Running the shared prefix first is what makes the sharing safe: each point has its own run dir
 * and lock, and the leader's shared outputs are committed and never written again when they are
 * linked, so no two runs ever produce or publish the same cache entry at once. When every point
 * has ended, the results are aggregated into
 * <sweepDir>/sweep.json. The grid and each child's state are in the `sweep` query, the memo
 * (`grid`, shown by the Web UI) and the search attributes (WmssStatus; WmssStep = points running).
 */
import {
  ApplicationFailure,
  executeChild,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
  type RetryPolicy,
} from '@temporalio/workflow';
import type { SweepActivities, SweepPointRecord } from '../activities/contract';
import { failureInfo } from '../pipeline/errors';
import { stepQueue } from '../pipeline/placement';
import { WmssRunName, WmssStatus, WmssStep, type RunStatus } from '../pipeline/searchAttributes';
import { checkSweepSpec, sharedSteps, type SweepPoint } from '../pipeline/sweep';
import { sweepQuery, type SweepProgress, type SweepResult } from '../pipeline/sweepApi';
import { workflowIdFor, type PipelineResult } from '../pipeline/workflowApi';
import { wmssPipeline } from './wmssPipeline';

export async function wmssSweep(rawSpec: unknown): Promise<SweepResult> {
  const { spec, points } = checkSweepSpec(rawSpec);
  const shared = points.length > 1 ? sharedSteps(points.map((p) => p.config)) : [];
  const taskQueue = stepQueue('cpu', points[0].config.placement, undefined);
  const retry: RetryPolicy = { maximumAttempts: 5, initialInterval: '2s', maximumInterval: '1m' };
  const { seedPointRunDir, aggregateSweep } = proxyActivities<SweepActivities>({
    taskQueue,
    startToCloseTimeout: '2h',
    heartbeatTimeout: '5m',
    retry,
  });
  // as long as the leader's Stage-1 SFT may take; heartbeats every 2 s, so a lost worker shows soon
  const { waitForSharedSteps } = proxyActivities<SweepActivities>({
    taskQueue,
    startToCloseTimeout: '30 days',
    heartbeatTimeout: '2m',
    retry,
  });
  let seedable: typeof shared = [];

  let status: RunStatus = 'running';
  const records: SweepPointRecord[] = points.map((p) => ({
    name: p.name,
    runName: p.config.runName,
    runDir: p.config.runDir,
    workflowId: workflowIdFor(p.config.runName),
    overrides: p.overrides,
    state: 'pending',
  }));
  const progress = (): SweepProgress => ({
    sweepName: spec.sweepName,
    sweepDir: spec.sweepDir,
    status,
    shared,
    keys: [...new Set(points.flatMap((p) => Object.keys(p.overrides)))],
    points: records,
  });
  setHandler(sweepQuery, progress);
  const publish = () => {
    upsertSearchAttributes([
      { key: WmssRunName, value: spec.sweepName },
      { key: WmssStatus, value: status },
      {
        key: WmssStep,
        value: records
          .filter((r) => r.state === 'running')
          .map((r) => r.name)
          .join(','),
      },
    ]);
    // the Web UI shows the memo: the grid, one line per point with its state
    upsertMemo({
      sweep: { name: spec.sweepName, dir: spec.sweepDir, shared },
      grid: records.map((r) => `${r.name} ${JSON.stringify(r.overrides)}: ${r.state}${r.error ? ` (${r.error})` : ''}`),
    });
  };
  publish();

  const run = async (point: SweepPoint, i: number): Promise<void> => {
    const rec = records[i];
    try {
      if (i > 0 && seedable.length) {
        const seeding = await seedPointRunDir({
          from: points[0].config.runDir,
          to: point.config.runDir,
          steps: seedable,
        });
        rec.seeded = seeding.seeded;
      }
      rec.state = 'running';
      publish();
      const result: PipelineResult = await executeChild(wmssPipeline, {
        args: [point.config],
        workflowId: rec.workflowId,
        taskQueue: point.config.placement.controlQueue,
        // cancelling the sweep lets each point's kernels checkpoint, as `wmss cancel` on a run
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
        staticSummary: `sweep ${spec.sweepName} point ${point.name} ${JSON.stringify(point.overrides)}`,
      });
      rec.cached = Object.values(result.steps)
        .filter((s) => s.cached)
        .map((s) => s.stepId);
      // A seeded step must come back as a hit; one that re-ran means STEP_READS misses a field its key reads.
      const reran = (rec.seeded ?? []).filter((id) => !rec.cached!.includes(id));
      if (reran.length) {
        rec.state = 'failed';
        rec.error = `seeded step(s) ${reran.join(', ')} were not cache hits: pipeline/sweep.ts STEP_READS misses a config field their keys read`;
      } else rec.state = 'completed';
    } catch (err) {
      rec.state = 'failed';
      rec.error = failureInfo(err).message.split('\n')[0];
    }
    publish();
  };

  const leader = run(points[0], 0);
  if (points.length > 1 && shared.length) {
    // the others start once the leader has finished the shared steps (or has ended: then they get
    // what it finished and compute the rest themselves)
    // (the wait returns in either case; a wait that fails for good seeds nothing)
    seedable = (
      await waitForSharedSteps({ workflowId: records[0].workflowId, steps: shared }).catch(() => ({ done: [] }))
    ).done;
  }
  await Promise.all([leader, ...points.slice(1).map((p, i) => run(p, i + 1))]);

  const failed = records.filter((r) => r.state !== 'completed');
  status = failed.length === records.length ? 'failed' : 'completed';
  const file = await aggregateSweep({
    sweepName: spec.sweepName,
    sweepDir: spec.sweepDir,
    workflowId: workflowInfo().workflowId,
    shared,
    points: records,
  });
  publish();
  if (status === 'failed')
    throw ApplicationFailure.create({
      type: 'StepFailed',
      nonRetryable: true,
      message: `every point of sweep ${spec.sweepName} failed: ${failed.map((r) => `${r.name}: ${r.error}`).join('; ')}`,
    });
  return { ...progress(), aggregate: file };
}
