/**
 * wmssPipeline: runs steps 0–7 as the DAG of pipeline/steps.ts. Deterministic code only; the
 * activities do all I/O. A step starts as soon as the steps it needs have finished, so 0, 1 and 4
 * run side by side when workers are free.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  getExternalWorkflowHandle,
  isCancellation,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { StepActivities } from '../activities/contract';
import { checkRunConfig, type RunConfig } from '../pipeline/config';
import { failureInfo } from '../pipeline/errors';
import { WmssBaseModel, WmssRunName, WmssStatus, WmssStep, type RunStatus } from '../pipeline/searchAttributes';
import {
  activeSteps,
  stepEnabled,
  stepQueueKind,
  stepRow,
  stepSummary,
  nonRetryableErrorTypes,
  type StepId,
  type StepResult,
  type StepRow,
} from '../pipeline/steps';
import { progressQuery, type PipelineProgress, type PipelineResult, type StepStatus } from '../pipeline/workflowApi';
import { stepFinishedSignal, SWEEP_PARENT_MEMO } from '../pipeline/sweepApi';
import { resolveRunTemplates } from '../pipeline/runTemplates';
import { templateContext } from './scheduledRun';
import { pinnedHost, stepQueue } from '../pipeline/placement';
import { hostUnavailableOr, rootHostOf } from './hostAffinity';
import { lockRunDir } from './lockRunDir';
import { runGroup, runsAsGroup } from './trainingGroup';
import { installRunControls } from './runControlHandlers';
import { startRunAlerts } from './alerts';
import { needsSetup, setUpRun } from './prepareRun';

/** A sweep's point tells the sweep each finished step (pipeline/sweepApi.ts); a lost signal only costs sharing. */
function tellSweep(stepId: StepId): void {
  const info = workflowInfo();
  if (!info.parent || !info.memo?.[SWEEP_PARENT_MEMO]) return;
  getExternalWorkflowHandle(info.parent.workflowId)
    .signal(stepFinishedSignal, { workflowId: info.workflowId, stepId })
    .catch(() => undefined);
}

type StepActivity = StepActivities[keyof StepActivities];

/** `host` (local storage): the step goes to that host's queue, see pipeline/placement.ts. */
function queueFor(row: StepRow, config: RunConfig, host: string | undefined): string {
  // steps with backend onnx go to the onnx workers (no Python there): docs/onnx.md
  if (stepQueueKind(row, config) === 'onnx') return config.placement.onnxQueue;
  return stepQueue(row.queue, config.placement, host);
}

function activityFor(row: StepRow, config: RunConfig, host: string | undefined): StepActivity {
  const pinned = host !== undefined && stepQueueKind(row, config) !== 'onnx';
  const proxies = proxyActivities<StepActivities>({
    taskQueue: queueFor(row, config, pinned ? host : undefined),
    // A pinned step that nobody on its host picks up fails as HostUnavailable (workflows/hostAffinity.ts).
    ...(pinned && { scheduleToStartTimeout: config.placement.hostTimeout as `${number}${'s' | 'm' | 'h'}` }),
    // The step id as activity id lets `wmss watch` match heartbeats to steps.
    activityId: row.id,
    startToCloseTimeout: row.timeouts.startToClose,
    heartbeatTimeout: config.timeouts.heartbeatSeconds
      ? `${config.timeouts.heartbeatSeconds}s`
      : row.timeouts.heartbeat,
    // Let a cancelled kernel save its checkpoint before the workflow reports "cancelled".
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { ...row.retry, nonRetryableErrorTypes: [...nonRetryableErrorTypes] },
    summary: stepSummary(row),
  });
  return proxies[row.activity];
}

export async function wmssPipeline(rawConfig: unknown): Promise<PipelineResult> {
  // a config that fails its schema fails the run as InvalidConfig, naming every bad key
  const parsed = checkRunConfig(rawConfig);
  // Date templates ({date}, …) and the per-run dir of scheduled runs: pipeline/runTemplates.ts.
  const config = resolveRunTemplates(parsed, templateContext());

  const steps = new Map<StepId, StepStatus>(
    // Steps whose `when` is false for this config (e.g. the ONNX exports) are left out altogether.
    activeSteps(config).map((row) => [row.id, { id: row.id, number: row.number, title: row.title, state: 'pending' }]),
  );
  let status: RunStatus = 'running';
  const progress = (): PipelineProgress => ({
    runName: config.runName,
    runDir: config.runDir,
    status,
    steps: [...steps.values()],
  });
  setHandler(progressQuery, progress);
  // `wmss checkpoint` and `wmss rerun` (workflows/runControlHandlers.ts); installed before the first await
  const results: Partial<Record<StepId, StepResult>> = {};
  let scheduling = true;
  let firstFailure: unknown;
  let wake = () => {};
  let rootReady!: (host: string | undefined) => void;
  const rootHostKnown = new Promise<string | undefined>((resolve) => (rootReady = resolve));
  const controls = installRunControls(
    { config, steps, results, scheduling: () => scheduling && firstFailure === undefined, wake: () => wake() },
    () => rootHostKnown,
  );

  const publish = () => {
    const running = activeSteps(config)
      .filter((r) => steps.get(r.id)!.state === 'running')
      .map((r) => r.number);
    upsertSearchAttributes([
      { key: WmssRunName, value: config.runName },
      { key: WmssBaseModel, value: config.baseModel },
      { key: WmssStatus, value: status },
      { key: WmssStep, value: running.join(',') },
    ]);
  };
  upsertMemo({
    config: {
      runName: config.runName,
      runDir: config.runDir,
      baseModel: config.baseModel,
      dataFile: config.dataFile,
      fusionLambda: config.joint.fusionLambda,
      weighting: config.weighting.formula,
      submodelIdx: config.extract.submodelIdx,
    },
  });
  publish();
  // webhook alerts of config.notify (workflows/alerts.ts); nothing at all without it
  const alerts = startRunAlerts(config, progress);

  // local storage: the host that will hold the run dir, chosen once (workflows/hostAffinity.ts)
  const rootHost = await rootHostOf(config);
  rootReady(rootHost);
  // one open run per run dir (workflows/lockRunDir.ts); released on every way out below
  const unlock = await lockRunDir(config, rootHost, () => {
    status = 'failed';
    publish();
  });
  // Hugging Face ids and tracking runs (workflows/prepareRun.ts); the steps see resolved directories
  // Without ids or trackers there is no await here at all: an extra await, even one that schedules
  // nothing, lets an Update handler (wmss rerun) finish earlier in the same workflow task and
  // changes the command order of recorded histories.
  let prepared: Awaited<ReturnType<typeof setUpRun>> = { stepConfig: config };
  if (needsSetup(config)) {
    try {
      prepared = await setUpRun(config, rootHost);
    } catch (err) {
      status = 'failed';
      publish();
      await unlock();
      const info = failureInfo(err);
      throw ApplicationFailure.create({
        type: info.type ?? 'StepFailed',
        nonRetryable: true,
        message: `run set-up failed: ${info.message}`,
        cause: err instanceof Error ? err : undefined,
      });
    }
  }
  const { stepConfig, setup } = prepared;
  const inFlight = new Map<StepId, Promise<StepId>>();

  const start = (row: StepRow) => {
    const status = steps.get(row.id)!;
    status.state = 'running';
    status.startedAt = new Date().toISOString();
    const deps = Object.fromEntries(
      row.needs.filter((id) => stepEnabled(stepRow(id), config)).map((id) => [id, results[id]]),
    );
    const host = pinnedHost(row, config.placement, results, rootHost);
    const input = { stepId: row.id, config: stepConfig, deps, ...(setup && { models: setup.models }) };
    // a training step on several hosts runs as a group of activities (workflows/trainingGroup.ts)
    const run = (runsAsGroup(row, config) ? runGroup(row, config, input) : activityFor(row, config, host)(input)).then(
      (result) => {
        results[row.id] = result;
        status.result = result;
        status.state = result.cached ? 'cached' : 'completed';
        status.finishedAt = new Date().toISOString();
        tellSweep(row.id);
        return row.id;
      },
      (failure) => {
        const err = hostUnavailableOr(failure, row, config, host);
        status.state = isCancellation(err) ? 'cancelled' : 'failed';
        status.error = failureInfo(err);
        status.finishedAt = new Date().toISOString();
        firstFailure ??= err;
        return row.id;
      },
    );
    inFlight.set(row.id, run);
  };

  const scope = new CancellationScope();
  try {
    await scope.run(async () => {
      for (;;) {
        // only when a rerun is under way: no await (and so no reordering) in runs without one
        for (let inv = controls.invalidating(); inv; inv = controls.invalidating()) await inv;
        if (firstFailure === undefined) {
          for (const row of activeSteps(config)) {
            const ready =
              steps.get(row.id)!.state === 'pending' &&
              row.needs.every((id) => results[id] !== undefined || !stepEnabled(stepRow(id), config));
            if (ready) start(row);
          }
        }
        publish();
        if (inFlight.size === 0) break;
        // a rerun (workflows/runControlHandlers.ts) wakes the loop to start its steps again
        const woken = new Promise<undefined>((resolve) => (wake = () => resolve(undefined)));
        const finished = await Promise.race([...inFlight.values(), woken]);
        if (finished === undefined) continue;
        inFlight.delete(finished);
        // One failed step dooms the run: stop the others so GPUs are freed (they checkpoint first).
        if (firstFailure !== undefined && !isCancellation(firstFailure)) scope.cancel();
      }
    });
  } catch (err) {
    firstFailure ??= err;
  }
  scheduling = false;

  if (firstFailure !== undefined) {
    status = isCancellation(firstFailure) || CancellationScope.current().consideredCancelled ? 'cancelled' : 'failed';
    publish();
    await unlock();
    alerts.stop();
    if (status === 'cancelled') throw firstFailure as Error; // Temporal's CancelledFailure, as it came
    const failed = [...steps.values()].find((s) => s.state === 'failed');
    const info = failureInfo(firstFailure);
    await alerts.failed(failed, info);
    throw ApplicationFailure.create({
      type: info.type ?? 'StepFailed',
      nonRetryable: true,
      message: `step ${failed?.number ?? '?'} (${failed?.title ?? 'unknown'}) failed: ${info.message}`,
      cause: firstFailure instanceof Error ? firstFailure : undefined,
    });
  }

  status = 'completed';
  publish();
  const evaluation = results.evaluate;
  const accuracy: PipelineResult['accuracy'] = {};
  for (const [key, value] of Object.entries(evaluation?.metrics ?? {})) {
    // metrics look like "pass_at_1/wmss/gsm8k"
    const [metric, model, dataset] = key.split('/');
    if (metric === 'pass_at_1' && model && dataset && typeof value === 'number')
      (accuracy[model] ??= {})[dataset] = value;
  }
  await unlock();
  await alerts.completed(`all ${steps.size} steps done`);
  return { runName: config.runName, runDir: config.runDir, steps: results, accuracy };
}
