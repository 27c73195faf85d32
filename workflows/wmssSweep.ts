/**
 * wmssSweep: one child wmssPipeline per point of a sweep (pipeline/sweep.ts, docs/sweeps.md).
 *
 * Each point after the first has seed sources (pipeline/sweep.ts seedSources): earlier points
 * and the steps each gives it. It starts once their runs have signalled those steps finished
 * (stepFinishedSignal: no activity slot is held and nothing polls while it waits), in a run dir
 * seeded with their outputs (activities/sweepActivities.ts), which its own run finds as verified
 * cache hits; a point that shares nothing starts at once. Running the shared steps first is what
 * makes the sharing safe: each point has its own run dir and lock, and the sources' shared
 * outputs are committed and never written again when they are linked, so no two runs ever
 * produce or publish the same cache entry at once. When every point has ended, the results are
 * aggregated into
 * <sweepDir>/sweep.json. The grid and each child's state are in the `sweep` query, the memo
 * (`grid`, shown by the Web UI) and the search attributes (WmssStatus; WmssStep = points running).
 */
import {
  ApplicationFailure,
  condition,
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
import type { StepId } from '../pipeline/steps';
import { failureInfo } from '../pipeline/errors';
import { stepQueue } from '../pipeline/placement';
import { WmssRunName, WmssStatus, WmssStep, type RunStatus } from '../pipeline/searchAttributes';
import { checkSweepSpec, seedSources, sharedSteps, type SeedSource, type SweepPoint } from '../pipeline/sweep';
import {
  stepFinishedSignal,
  sweepQuery,
  SWEEP_PARENT_MEMO,
  type SweepProgress,
  type SweepResult,
} from '../pipeline/sweepApi';
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
  const sources = seedSources(points.map((p) => p.config));
  // the steps each point's run has finished, as its stepFinished signals say
  const finished = points.map(() => new Set<StepId>());

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
  setHandler(stepFinishedSignal, ({ workflowId, stepId }) => {
    finished[records.findIndex((r) => r.workflowId === workflowId)]?.add(stepId);
  });
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
      grid: records.map(
        (r) =>
          `${r.name} ${JSON.stringify(r.overrides)}: ${r.state}${r.seededFrom ? `, seeded from ${r.seededFrom.join(' and ')}` : ''}${r.error ? ` (${r.error})` : ''}`,
      ),
    });
  };
  publish();

  const run = async (point: SweepPoint, i: number): Promise<void> => {
    const rec = records[i];
    try {
      // each source has finished its steps, or has ended (then: what it finished; the point computes the rest)
      const done = (source: SeedSource) => source.steps.filter((id) => finished[source.donor].has(id));
      const ready = (source: SeedSource) =>
        done(source).length === source.steps.length || !['pending', 'running'].includes(records[source.donor].state);
      if (sources[i].length) await condition(() => sources[i].every(ready));
      for (const source of sources[i]) {
        const seedable = done(source);
        if (!seedable.length) continue;
        const seeding = await seedPointRunDir({
          from: points[source.donor].config.runDir,
          to: point.config.runDir,
          steps: seedable,
        });
        rec.seeded = [...(rec.seeded ?? []), ...seeding.seeded];
        rec.seededFrom = [...(rec.seededFrom ?? []), points[source.donor].name];
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
        // the run signals each finished step back (pipeline/sweepApi.ts)
        memo: { [SWEEP_PARENT_MEMO]: spec.sweepName },
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

  await Promise.all(points.map((p, i) => run(p, i)));

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
