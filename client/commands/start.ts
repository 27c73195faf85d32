/** `wmss start <config>`: validate, make paths absolute, start the workflow, print id and UI link. */
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { RunConfig } from '../../pipeline/config';
import { WmssBaseModel, WmssRunName, WmssStatus, WmssStep } from '../../pipeline/searchAttributes';
import { WORKFLOW_TYPE, workflowIdFor, type PipelineResult } from '../../pipeline/workflowApi';

/**
 * Starts the pipeline. The run saves its effective config (`.wmss/run-config.json`, for `wmss
 * resume <run dir>`) itself once it holds the run dir's lock (activities/runLock.ts): written
 * from here it could overwrite the file of another run that is using the dir.
 */
export async function startPipeline(client: Client, config: RunConfig, workflowId = workflowIdFor(config.runName)) {
  try {
    return await client.workflow.start(WORKFLOW_TYPE, pipelineStartOptions(config, workflowId));
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new Error(
        `run ${workflowId} is already running; follow it with \`wmss watch ${workflowId}\` or stop it with \`wmss cancel ${workflowId}\``,
      );
    }
    throw err;
  }
}

export async function waitForResult(client: Client, workflowId: string): Promise<PipelineResult> {
  return client.workflow.getHandle(workflowId).result() as Promise<PipelineResult>;
}

/** How every `wmss` command starts the pipeline (also `wmss rerun` of a closed run, client/commands/runControls.ts). */
export function pipelineStartOptions(config: RunConfig, workflowId: string) {
  return {
    taskQueue: config.placement.controlQueue,
    workflowId,
    args: [config] as [RunConfig],
    staticSummary: `WMSS run ${config.runName} (${config.baseModel})`,
    typedSearchAttributes: [
      { key: WmssRunName, value: config.runName },
      { key: WmssBaseModel, value: config.baseModel },
      { key: WmssStatus, value: 'running' },
      { key: WmssStep, value: '' },
    ],
  };
}
