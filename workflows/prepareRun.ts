/**
 * The run's set-up in the workflow: only when the config names a Hugging Face id or an MLflow /
 * W&B tracker (runs without either schedule nothing new, so their histories replay as before).
 * The steps then read the resolved snapshot directory; the id stays in the config shown to users.
 */
import { proxyActivities, upsertMemo } from '@temporalio/workflow';
import type { RunConfig } from '../pipeline/config';
import { NON_RETRYABLE_ERROR_TYPES } from '../pipeline/errors';
import { parseModelId } from '../pipeline/modelRef';
import { stepQueue } from '../pipeline/placement';
import type { RunSetup, RunSetupActivities } from '../pipeline/runSetupTypes';

export function needsSetup(config: RunConfig): Record<string, string> | undefined {
  const models: Record<string, string> = {};
  if (parseModelId(config.baseModel)) models.baseModel = config.baseModel;
  const trackers = config.tracking.mlflow !== undefined || config.tracking.wandb !== undefined;
  return Object.keys(models).length || trackers ? models : undefined;
}

/** The config the steps see (ids replaced by directories) and the set-up, if one ran. */
export async function setUpRun(
  config: RunConfig,
  rootHost: string | undefined,
): Promise<{ stepConfig: RunConfig; setup?: RunSetup }> {
  const models = needsSetup(config);
  if (!models) return { stepConfig: config };
  const { setUpRun: run } = proxyActivities<RunSetupActivities>({
    // GPU workers have Python and the Hugging Face cache; with local storage, the run's host
    taskQueue: stepQueue('gpu', config.placement, rootHost),
    // a first download of an 8B model is tens of GB
    startToCloseTimeout: '6h',
    activityId: 'setup',
    retry: { maximumAttempts: 5, nonRetryableErrorTypes: [...NON_RETRYABLE_ERROR_TYPES] },
    summary: 'run set-up · Hugging Face ids, tracking runs',
  });
  const setup = await run({ config, models });
  upsertMemo({
    models: setup.models,
    tracking: Object.fromEntries(Object.entries(setup.trackers).map(([name, t]) => [name, t.url ?? t.error ?? null])),
  });
  const baseModel = setup.models.baseModel?.path ?? config.baseModel;
  return { stepConfig: { ...config, baseModel }, setup };
}
