/**
 * `wmss resume <run-dir | config.json | run>`: start a run's config again after a failure that
 * exhausted its retries (or a cancel). Finished steps are verified cache hits and training resumes
 * from its newest complete checkpoint, so only the remaining work runs.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { parseRunConfig, type RunConfig } from '../../pipeline/config';
import { RUN_CONFIG_FILE } from '../../pipeline/artifacts';
import { workflowIdFor } from '../../pipeline/workflowApi';
import { readRunConfig } from '../runConfigFile';
import { resolveRunTemplates } from '../../pipeline/runTemplates';
import { TemporalScheduledById, TemporalScheduledStartTime } from '../../pipeline/searchAttributes';

/** The config of a run, from a config file, a run dir (where `wmss start` saved it) or the run's history. */
export async function configToResume(client: Client, target: string): Promise<RunConfig> {
  if (existsSync(target) && statSync(target).isDirectory()) {
    const saved = path.join(target, RUN_CONFIG_FILE);
    if (!existsSync(saved))
      throw new Error(`${target} has no ${RUN_CONFIG_FILE}: pass the config file or the run name instead`);
    return readRunConfig(saved);
  }
  if (existsSync(target)) return readRunConfig(target);
  // A run name or workflow id: the config is the input of its first execution event.
  const workflowId = target.startsWith('wmss-') ? target : workflowIdFor(target);
  const handle = client.workflow.getHandle(workflowId);
  const history = await handle.fetchHistory();
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  const payload = started?.input?.payloads?.[0];
  if (!payload) throw new Error(`no input found in the history of ${workflowId}`);
  const input = await client.options.loadedDataConverter.payloadConverter.fromPayload(payload);
  // The run resolved its path templates ({date}, and the per-run dir of a scheduled run) from its
  // own start: resume with those paths, so it continues in the same run dir (whose lock it takes
  // over once that run has closed), not in a new one named after today.
  const d = await handle.describe();
  const scheduledAt = d.typedSearchAttributes.get(TemporalScheduledStartTime);
  const scheduled = Boolean(d.typedSearchAttributes.get(TemporalScheduledById));
  return resolveRunTemplates(parseRunConfig(input), { time: scheduledAt ?? d.startTime, workflowId, scheduled });
}
