/**
 * Host affinity inside the workflow (placement.storage = 'local'): which host the run's first
 * steps go to, and the error a step gets when the host holding its inputs has no worker.
 * Workflow code: deterministic, no I/O; the only activity is a question to a GPU worker.
 */
import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { PlacementActivities } from '../activities/contract';
import type { RunConfig } from '../pipeline/config';
import { ErrorTypes, isScheduleToStartTimeout } from '../pipeline/errors';
import { stepQueue } from '../pipeline/placement';
import type { StepRow } from '../pipeline/steps';

/**
 * The host of the roots (steps 0, 1, 4) with local storage: placement.host when set, else the
 * host of whichever GPU worker first picks up a one-line question on the shared GPU queue (a free
 * worker, since a busy one is not polling). Every later step follows its inputs, so this choice
 * places the whole run. With shared storage there is no such host.
 */
export async function rootHostOf(config: RunConfig): Promise<string | undefined> {
  if (config.placement.storage === 'shared') return undefined;
  if (config.placement.host) return config.placement.host;
  const { workerHost } = proxyActivities<PlacementActivities>({
    taskQueue: stepQueue('gpu', config.placement),
    startToCloseTimeout: '1m',
    retry: { maximumAttempts: 5 },
    summary: 'placement · pick the host that will hold the run dir (storage: local)',
  });
  return workerHost();
}

/**
 * A pinned step whose task nobody picked up within placement.hostTimeout becomes a
 * HostUnavailable failure that says what to do; every other error passes through unchanged.
 * (GPU workers take every task of their host queue at once and queue them for their devices, so
 * a busy host still starts its tasks: only a host without a polling worker times out here.)
 */
export function hostUnavailableOr(err: unknown, row: StepRow, config: RunConfig, host: string | undefined): unknown {
  if (host === undefined || !isScheduleToStartTimeout(err)) return err;
  return hostUnavailable(`step ${row.number}`, row.queue, config, host, err);
}

/** The same for the run's own activities on the host (the run dir lock): `what` names the task. */
export function hostUnavailable(
  what: string,
  queueKind: StepRow['queue'],
  config: RunConfig,
  host: string,
  err: unknown,
): ApplicationFailure {
  const queue = stepQueue(queueKind, config.placement, host);
  const worker =
    queueKind === 'gpu'
      ? `wmss worker gpu --gpus … --host ${host}${config.placement.gpuPool ? ` --pool ${config.placement.gpuPool}` : ''}`
      : `wmss worker control --host ${host}`;
  return ApplicationFailure.create({
    type: ErrorTypes.HostUnavailable,
    nonRetryable: true,
    message:
      `${what} must run on host ${host}, which holds its inputs (placement.storage is "local"), ` +
      `but no worker polled task queue ${queue} for ${config.placement.hostTimeout}. ` +
      `Restart that host's worker (${worker}) and start the same config again (finished steps are reused), ` +
      `or set placement.storage to "shared" if every worker can read the run dir.`,
    cause: err instanceof Error ? err : undefined,
  });
}
