/** `wmss start <config>`: validate, make paths absolute, start the workflow, print id and UI link. */
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { RUN_CONFIG_FILE } from '../../pipeline/artifacts';
import type { RunConfig } from '../../pipeline/config';
import { WmssBaseModel, WmssRunName, WmssStatus, WmssStep } from '../../pipeline/searchAttributes';
import { WORKFLOW_TYPE, workflowIdFor, type PipelineResult } from '../../pipeline/workflowApi';

/** Saves the effective config in the run dir (best effort: the run dir may be on another host). */
function saveRunConfig(config: RunConfig): void {
  try {
    const file = path.join(config.runDir, RUN_CONFIG_FILE);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(config, null, 2));
  } catch {
    // not reachable from here; `wmss resume <run>` reads the config from the history instead
  }
}

export async function startPipeline(client: Client, config: RunConfig, workflowId = workflowIdFor(config.runName)) {
  saveRunConfig(config);
  try {
    return await client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: config.placement.controlQueue,
      workflowId,
      args: [config],
      staticSummary: `WMSS run ${config.runName} (${config.baseModel})`,
      typedSearchAttributes: [
        { key: WmssRunName, value: config.runName },
        { key: WmssBaseModel, value: config.baseModel },
        { key: WmssStatus, value: 'running' },
        { key: WmssStep, value: '' },
      ],
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new Error(`run ${workflowId} is already running; follow it with \`wmss watch ${workflowId}\` or stop it with \`wmss cancel ${workflowId}\``);
    }
    throw err;
  }
}

export async function waitForResult(client: Client, workflowId: string): Promise<PipelineResult> {
  return client.workflow.getHandle(workflowId).result() as Promise<PipelineResult>;
}
