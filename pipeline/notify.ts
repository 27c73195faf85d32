/**
 * Alerts of a run (`notify` in the run config): which events post to which webhook, and the payload
 * posted. Plain zod and pure functions: the workflow (workflows/alerts.ts) builds alerts, the
 * control worker's activity (activities/alertActivities.ts) posts them. Secrets are not here: a
 * webhook token comes from the worker's environment (`tokenEnv`), so it never enters the history.
 */
import { z } from 'zod';

export const AlertEvent = z.enum(['failed', 'stalled', 'completed']);
export type AlertEvent = z.infer<typeof AlertEvent>;

export const NotifyConfig = z
  .object({
    webhook: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//.test(u), 'an http:// or https:// URL')
      .describe('URL that receives a POST for each alert (JSON body).'),
    on: z
      .array(AlertEvent)
      .min(1)
      .default(['failed', 'stalled'])
      .describe(
        'Events that post: failed (the run failed), stalled (a step made no progress for stalledAfterSeconds), completed.',
      ),
    format: z
      .enum(['json', 'slack'])
      .default('json')
      .describe('json: the alert\'s fields; slack: {"text": …} for a Slack-compatible incoming webhook.'),
    tokenEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')
      .default('WMSS_NOTIFY_TOKEN')
      .describe(
        "Environment variable of the control worker holding a token sent as 'Authorization: Bearer <token>'; unset: no header. The token itself never enters the run's history.",
      ),
    stalledAfterSeconds: z
      .number()
      .int()
      .min(5)
      .max(7 * 86_400)
      .default(1800)
      .describe(
        'A running step is stalled when its last progress (a new count, loss or phase in its heartbeat), or its start when it has none, is older than this; the workflow checks every half of it.',
      ),
  })
  .strict();
export type NotifyConfig = z.infer<typeof NotifyConfig>;

/** What one alert says; the same fields in every format. */
export interface Alert {
  event: AlertEvent;
  runName: string;
  runDir: string;
  workflowId: string;
  runId: string;
  /** The step concerned (failed: the first that failed; stalled: the stalled one). */
  step?: { id: string; number: string; title: string };
  failureType?: string;
  message: string;
  /** ISO time the workflow raised it. */
  at: string;
}

/** Where and how to post: the config's part that the activity needs. */
export type AlertTarget = Pick<NotifyConfig, 'webhook' | 'format' | 'tokenEnv'>;

/** The JSON body posted for `alert`; webUi is the run's Web UI page (the activity knows the server). */
export function alertBody(alert: Alert, format: NotifyConfig['format'], webUi: string): unknown {
  if (format === 'json') return { ...alert, webUi };
  const step = alert.step ? ` at step ${alert.step.number} (${alert.step.title})` : '';
  const type = alert.failureType ? ` [${alert.failureType}]` : '';
  return { text: `wmss run ${alert.runName} ${alert.event}${step}${type}: ${alert.message} <${webUi}|Web UI>` };
}
