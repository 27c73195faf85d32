/**
 * `wmss checkpoint <run>` and `wmss rerun <run> <step>`: the run controls of
 * pipeline/runControlApi.ts sent as workflow Updates (docs/operating.md#run-controls).
 */
import { WithStartWorkflowOperation, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { checkpointUpdate, rerunUpdate, type CheckpointReply, type RerunReply } from '../../pipeline/runControlApi';
import { STEPS, type StepId } from '../../pipeline/steps';
import { WORKFLOW_TYPE } from '../../pipeline/workflowApi';
import { absolutize } from '../runConfigFile';
import { configToResume } from './resume';
import { pipelineStartOptions } from './start';

/** A step as the user names it: its number (3, 5b) or its id (merge, joint). */
export function stepIdOf(name: string): StepId {
  const row = STEPS.find((r) => r.id === name || r.number === name);
  if (!row) throw new Error(`unknown step "${name}": one of ${STEPS.map((r) => `${r.number} (${r.id})`).join(', ')}`);
  return row.id;
}

/** An Update the workflow refused or failed: its reason, as an Error the CLI prints. */
function refused(err: unknown): never {
  if (err instanceof WorkflowUpdateFailedError) throw new Error(err.cause?.message ?? err.message);
  throw err;
}

export async function checkpointNow(client: Client, workflowId: string, step?: string): Promise<CheckpointReply> {
  const handle = client.workflow.getHandle(workflowId);
  const { status } = await handle.describe();
  if (status.name !== 'RUNNING')
    throw new Error(`run ${workflowId} has ended (${status.name.toLowerCase()}); no kernel runs to save a checkpoint`);
  const args: [StepId | null] = [step === undefined ? null : stepIdOf(step)];
  return handle.executeUpdate(checkpointUpdate, { args }).catch(refused);
}

/**
 * A running run takes the Update as it is; a closed one is started again with the config of its
 * history (as `wmss resume` does) and gets the Update in the same request (Update-with-Start), so
 * the invalidation comes before any step starts and the steps before it are verified cache hits.
 */
export async function rerun(
  client: Client,
  workflowId: string,
  step: string,
): Promise<RerunReply & { restarted: boolean }> {
  const stepId = stepIdOf(step);
  const handle = client.workflow.getHandle(workflowId);
  const { status } = await handle.describe();
  if (status.name === 'RUNNING') {
    const reply = await handle.executeUpdate(rerunUpdate, { args: [stepId] }).catch(refused);
    return { ...reply, restarted: false };
  }
  const config = absolutize(await configToResume(client, workflowId));
  const start = new WithStartWorkflowOperation(WORKFLOW_TYPE, {
    ...pipelineStartOptions(config, workflowId),
    workflowIdConflictPolicy: 'USE_EXISTING',
  });
  const reply = await client.workflow
    .executeUpdateWithStart(rerunUpdate, { args: [stepId], startWorkflowOperation: start })
    .catch(refused);
  return { ...reply, restarted: true };
}
