/**
 * The run dir lock, workflow side (activities/runLock.ts has the design): the run takes the lock
 * of its run dir before any step and releases it on every way out (completed, failed, cancelled).
 * A run that cannot take it fails at once with RunDirLocked, naming the run that holds it.
 *
 * Behind `patched('run-dir-lock')`: histories recorded before the lock existed replay without it.
 */
import { ApplicationFailure, CancellationScope, patched, proxyActivities } from '@temporalio/workflow';
import type { RunLockActivities } from '../activities/contract';
import type { RunConfig } from '../pipeline/config';
import { ErrorTypes, failureInfo, isScheduleToStartTimeout } from '../pipeline/errors';
import { stepQueue } from '../pipeline/placement';
import { hostUnavailable } from './hostAffinity';

export const RUN_LOCK_PATCH = 'run-dir-lock';

/**
 * Take the lock (on the control worker that holds the run dir: with local storage, `rootHost`'s).
 * Returns the release, which never throws. `onRefused` runs before the run fails for the lock.
 */
export async function lockRunDir(
  config: RunConfig,
  rootHost: string | undefined,
  onRefused: () => void,
): Promise<() => Promise<void>> {
  if (!patched(RUN_LOCK_PATCH)) return async () => undefined;
  const taskQueue = stepQueue('cpu', config.placement, rootHost);
  const { lockRunDir: lock } = proxyActivities<RunLockActivities>({
    taskQueue,
    // pinned to the host holding the run dir: nobody there to take it is HostUnavailable, not a wait forever
    ...(rootHost !== undefined && {
      scheduleToStartTimeout: config.placement.hostTimeout as `${number}${'s' | 'm' | 'h'}`,
    }),
    // a terminated previous owner is waited for (its kernels may still be saving), heartbeating
    startToCloseTimeout: '10m',
    heartbeatTimeout: '1m',
    retry: {
      maximumAttempts: 5,
      initialInterval: '1s',
      maximumInterval: '30s',
      nonRetryableErrorTypes: [ErrorTypes.RunDirLocked, ErrorTypes.ArtifactConflict],
    },
    summary: 'run dir lock · take',
  });
  const { unlockRunDir: unlock } = proxyActivities<RunLockActivities>({
    taskQueue,
    startToCloseTimeout: '1m',
    scheduleToCloseTimeout: '10m',
    retry: { maximumAttempts: 5, initialInterval: '1s', maximumInterval: '30s' },
    summary: 'run dir lock · release',
  });
  try {
    await lock({ runDir: config.runDir, runName: config.runName, config });
  } catch (err) {
    onRefused();
    if (rootHost !== undefined && isScheduleToStartTimeout(err))
      throw hostUnavailable('the run dir lock', 'cpu', config, rootHost, err);
    const info = failureInfo(err);
    throw ApplicationFailure.create({
      type: info.type ?? ErrorTypes.RunDirLocked,
      nonRetryable: true,
      message: info.message,
      cause: err instanceof Error ? err : undefined,
    });
  }
  return async () => {
    // also when the run is cancelled; a release that cannot run leaves a lock that is stale once this run closes
    await CancellationScope.nonCancellable(() => unlock({ runDir: config.runDir })).catch(() => undefined);
  };
}
