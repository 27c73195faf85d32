/**
 * The workflow tests' shared set-up: a local dev server from the project's Temporal CLI (with the
 * pipeline's search attributes) and the workflow bundle, built once per test file.
 */
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { SEARCH_ATTRIBUTES } from '../../pipeline/searchAttributes';

export const TEMPORAL_CLI = path.resolve(__dirname, '../../.venv/bin/temporal');

export interface LocalEnv {
  env: TestWorkflowEnvironment;
  bundle: WorkflowBundleWithSourceMap;
}

export async function startLocalEnv(): Promise<LocalEnv> {
  const env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: TEMPORAL_CLI }, searchAttributes: SEARCH_ATTRIBUTES },
  });
  return { env, bundle: await bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows') }) };
}
