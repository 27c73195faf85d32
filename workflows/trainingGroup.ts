/**
 * A training step on several hosts (config placement.nodes, pipeline/groups.ts): one activity per
 * member host, on that host's GPU queue, each starting torchrun --nnodes N --node-rank i against
 * the rendezvous member 0 offers. The group lives and dies as one:
 *   - every member waits at most placement.hostTimeout to be picked up; a host without a worker
 *     fails the group at once with HostUnavailable (the others are cancelled);
 *   - a member that fails makes the workflow cancel the others (their kernels save a checkpoint
 *     if they still can, and exit), and the group is tried again as a whole, with a new
 *     rendezvous, up to the step's retry policy; the kernels resume from the last complete
 *     checkpoint;
 *   - a member whose host goes silent (no heartbeat) counts as a lost rank: RankLost, retried.
 * Member 0's result is the step's. Workflow code: deterministic, no I/O.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  proxyActivities,
  sleep,
} from '@temporalio/workflow';
import { ActivityFailure, TimeoutFailure } from '@temporalio/common';
import type { PlacementActivities, StepActivities } from '../activities/contract';
import type { RunConfig } from '../pipeline/config';
import { ErrorTypes, isScheduleToStartTimeout } from '../pipeline/errors';
import { groupSize, type GroupMember, type Rendezvous } from '../pipeline/groups';
import { stepQueue } from '../pipeline/placement';
import { nonRetryableErrorTypes, stepSummary, type StepInput, type StepResult, type StepRow } from '../pipeline/steps';
import { hostUnavailable } from './hostAffinity';

type Duration = `${number}${'s' | 'm' | 'h'}`;

/** Whether a step runs as a group under this config. */
export function runsAsGroup(row: StepRow, config: RunConfig): boolean {
  return groupSize(row.id, config.placement) > 1;
}

function seconds(d: string): number {
  const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[d.slice(-1) as 's' | 'm' | 'h' | 'd'];
  return Number(d.slice(0, -1)) * unit;
}

/** The ApplicationFailure inside an activity failure, if any. */
function applicationFailure(err: unknown): ApplicationFailure | undefined {
  let cause: unknown = err;
  while (cause && !(cause instanceof ApplicationFailure)) cause = (cause as { cause?: unknown }).cause;
  return cause instanceof ApplicationFailure ? cause : undefined;
}

/** Whether the group may try again after `err`: not for a failure a retry cannot fix. */
function retryable(err: unknown): boolean {
  if (isCancellation(err)) return false;
  const app = applicationFailure(err);
  if (!app) return true;
  return !app.nonRetryable && !nonRetryableErrorTypes.includes(app.type ?? '');
}

/**
 * What a member's failure means for the group: HostUnavailable when nobody on its host picked it
 * up, RankLost when its host stopped heartbeating (worker or machine gone), else the failure.
 */
function memberFailure(err: unknown, row: StepRow, config: RunConfig, host: string, index: number): unknown {
  if (isScheduleToStartTimeout(err))
    return hostUnavailable(`step ${row.number} (group member ${index})`, 'gpu', config, host, err);
  if (err instanceof ActivityFailure && err.cause instanceof TimeoutFailure)
    return ApplicationFailure.create({
      type: ErrorTypes.RankLost,
      message: `step ${row.number}: group member ${index} on host ${host} was lost (${err.cause.timeoutType} timeout: its worker or host is gone); the group is retried from the last complete checkpoint`,
      cause: err,
    });
  return err;
}

function memberActivity(row: StepRow, config: RunConfig, host: string, index: number, n: number, attempt: number) {
  const proxies = proxyActivities<StepActivities>({
    taskQueue: stepQueue('gpu', config.placement, host),
    // a member that no worker of its host takes within the host timeout fails the group
    scheduleToStartTimeout: config.placement.hostTimeout as Duration,
    // member 0 keeps the step id, so `wmss watch` and `wmss status` follow it like any step
    activityId: index === 0 ? row.id : `${row.id}.member-${index}`,
    startToCloseTimeout: row.timeouts.startToClose,
    heartbeatTimeout: config.timeouts.heartbeatSeconds
      ? `${config.timeouts.heartbeatSeconds}s`
      : row.timeouts.heartbeat,
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    // the group retries as one (runGroup), never a member alone
    retry: { maximumAttempts: 1 },
    summary: `${stepSummary(row)} · group member ${index + 1}/${n} on ${host} (try ${attempt})`,
  });
  return proxies[row.activity];
}

/** One try of the group: the rendezvous on member 0, then every member at once. */
async function groupAttempt(row: StepRow, config: RunConfig, input: StepInput, attempt: number): Promise<StepResult> {
  const n = groupSize(row.id, config.placement);
  const hosts = config.placement.groupHosts!.slice(0, n);
  const { groupRendezvous } = proxyActivities<PlacementActivities>({
    taskQueue: stepQueue('gpu', config.placement, hosts[0]),
    scheduleToStartTimeout: config.placement.hostTimeout as Duration,
    startToCloseTimeout: '1m',
    retry: { maximumAttempts: 3 },
    summary: `${stepSummary(row)} · group rendezvous on ${hosts[0]} (try ${attempt})`,
  });
  let rendezvous: Rendezvous;
  try {
    rendezvous = await groupRendezvous();
  } catch (err) {
    throw memberFailure(err, row, config, hosts[0], 0);
  }
  const joinTimeoutS = Math.max(60, seconds(config.placement.hostTimeout));

  let result: StepResult | undefined;
  let failure: unknown;
  let cancelled: unknown;
  const members = new CancellationScope();
  await members.run(() =>
    Promise.all(
      hosts.map((host, index) => {
        const group: GroupMember = { index, count: n, ...rendezvous, attempt, joinTimeoutS };
        return memberActivity(
          row,
          config,
          host,
          index,
          n,
          attempt,
        )({ ...input, group }).then(
          (r) => {
            if (index !== 0) return;
            result = r;
            // a cache hit starts no kernel on member 0: the others need not wait for it
            if (r.cached) members.cancel();
          },
          (err) => {
            if (isCancellation(err)) {
              cancelled ??= err;
              return;
            }
            if (failure === undefined) {
              failure = memberFailure(err, row, config, host, index);
              members.cancel(); // the rest of the world cannot go on without this member
            }
          },
        );
      }),
    ),
  );
  if (failure !== undefined) throw failure as Error;
  if (result) return result;
  throw cancelled as Error; // the workflow (or the pipeline, another step having failed) cancelled the step
}

/**
 * Runs a training step as a group, trying the whole group again after a retryable failure with
 * the step's retry policy (its attempts, initial interval, backoff and maximum interval).
 */
export async function runGroup(row: StepRow, config: RunConfig, input: StepInput): Promise<StepResult> {
  const policy = row.retry;
  for (let attempt = 1; ; attempt++) {
    try {
      return await groupAttempt(row, config, input, attempt);
    } catch (err) {
      if (!retryable(err) || attempt >= policy.maximumAttempts || CancellationScope.current().consideredCancelled)
        throw err;
      const wait = Math.min(
        seconds(policy.initialInterval) * policy.backoffCoefficient ** (attempt - 1),
        seconds(policy.maximumInterval),
      );
      await sleep(`${wait}s`);
    }
  }
}
