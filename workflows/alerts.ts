/**
 * Run alerts (`notify` in the config, pipeline/notify.ts) on the workflow's side: a "failed" or
 * "completed" alert when the run ends, and a watcher that raises "stalled" for a step with no
 * progress for notify.stalledAfterSeconds (checked every half of it through findStalledSteps).
 *
 * Each alert is posted by its own small workflow (deliverAlertWorkflow), started as an abandoned
 * child: its retries with backoff go on after the run has ended, and an endpoint that never
 * answers delays or fails nothing of the run. Without `notify` nothing here schedules anything,
 * so runs without alerts keep the history they had before alerts existed.
 */
import {
  CancellationScope,
  ParentClosePolicy,
  isCancellation,
  log,
  proxyActivities,
  sleep,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import type { AlertActivities } from '../activities/alertActivities';
import type { RunConfig } from '../pipeline/config';
import type { Alert, AlertEvent, AlertTarget } from '../pipeline/notify';
import type { PipelineProgress, StepStatus } from '../pipeline/workflowApi';

/** Backoff of one alert: 5 s, 10 s, 20 s … up to 10 min apart, about an hour in all. */
const DELIVERY_RETRY = {
  initialInterval: '5s',
  backoffCoefficient: 2,
  maximumInterval: '10m',
  maximumAttempts: 12,
} as const;

/** Posts one alert, retried with backoff; ends with delivered: false when every attempt failed. */
export async function deliverAlertWorkflow(input: {
  alert: Alert;
  target: AlertTarget;
}): Promise<{ delivered: boolean; status?: number }> {
  const { deliverAlert } = proxyActivities<AlertActivities>({
    startToCloseTimeout: '30s',
    retry: DELIVERY_RETRY,
  });
  try {
    const { status } = await deliverAlert(input);
    return { delivered: true, status };
  } catch (err) {
    log.warn('alert not delivered', { event: input.alert.event, error: String(err) });
    return { delivered: false };
  }
}

export interface RunAlerts {
  failed(step: StepStatus | undefined, failure: { type?: string; message: string }): Promise<void>;
  completed(message: string): Promise<void>;
  /** Stops the stall watcher. */
  stop(): void;
}

const stepOf = (s: StepStatus) => ({ id: s.id, number: s.number, title: s.title });

export function startRunAlerts(config: RunConfig, progress: () => PipelineProgress): RunAlerts {
  const notify = config.notify;
  if (!notify) return { failed: async () => undefined, completed: async () => undefined, stop: () => undefined };
  const info = workflowInfo();
  const target: AlertTarget = { webhook: notify.webhook, format: notify.format, tokenEnv: notify.tokenEnv };
  let sent = 0;

  const send = async (event: AlertEvent, fields: Pick<Alert, 'step' | 'failureType' | 'message'>) => {
    if (!notify.on.includes(event)) return;
    const alert: Alert = {
      event,
      runName: config.runName,
      runDir: config.runDir,
      workflowId: info.workflowId,
      runId: info.runId,
      ...fields,
      at: new Date().toISOString(),
    };
    try {
      // not cancellable: a stall alert is sent from inside the watcher's scope, and cancelling the
      // watcher at the end of the run must not cancel deliveries still retrying
      await CancellationScope.nonCancellable(() =>
        startChild(deliverAlertWorkflow, {
          args: [{ alert, target }],
          // the run id too: a later run of the same workflow id (a resume) must not collide with
          // an alert of this one still retrying
          workflowId: `${info.workflowId}.alert-${++sent}-${event}-${info.runId}`,
          taskQueue: config.placement.controlQueue,
          parentClosePolicy: ParentClosePolicy.ABANDON,
        }),
      );
    } catch (err) {
      log.warn('cannot start the alert workflow', { event, error: String(err) }); // an alert never fails the run
    }
  };

  const watcher = new CancellationScope();
  if (notify.on.includes('stalled')) {
    const { findStalledSteps } = proxyActivities<AlertActivities>({
      taskQueue: config.placement.controlQueue,
      startToCloseTimeout: '30s',
      retry: { maximumAttempts: 3 },
    });
    const alerted = new Map<string, string>(); // step → the `since` already reported
    void watcher
      .run(async () => {
        for (;;) {
          await sleep(notify.stalledAfterSeconds * 500);
          const query = {
            workflowId: info.workflowId,
            runId: info.runId,
            stalledAfterSeconds: notify.stalledAfterSeconds,
          };
          const stalled = await findStalledSteps(query).catch((err) => {
            if (isCancellation(err)) throw err;
            return []; // a check that fails is skipped, the next one comes
          });
          for (const s of stalled) {
            const status = progress().steps.find((p) => p.id === s.stepId);
            if (!status || alerted.get(s.stepId) === s.since) continue;
            alerted.set(s.stepId, s.since);
            await send('stalled', {
              step: stepOf(status),
              message: `no progress since ${s.since} (attempt ${s.attempt}; limit ${notify.stalledAfterSeconds} s)`,
            });
          }
        }
      })
      .catch(() => undefined); // cancelled: the run has ended
  }

  return {
    async failed(step, failure) {
      watcher.cancel();
      await send('failed', { step: step && stepOf(step), failureType: failure.type, message: failure.message });
    },
    async completed(message) {
      watcher.cancel();
      await send('completed', { message });
    },
    stop: () => watcher.cancel(),
  };
}
