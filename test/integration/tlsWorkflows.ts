/**
 * The trivial workflow of test/integration/tls.test.ts: one activity round trip, so a worker
 * behind the TLS proxy polls both a workflow task and an activity task.
 */
import { proxyActivities } from '@temporalio/workflow';

const { greet } = proxyActivities<{ greet(name: string): Promise<string> }>({ startToCloseTimeout: '30s' });

export async function tlsEcho(name: string): Promise<string> {
  return `echo: ${await greet(name)}`;
}
