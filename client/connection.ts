/**
 * How the CLI and workers reach Temporal: TEMPORAL_ADDRESS (default localhost:7233) and
 * TEMPORAL_NAMESPACE (default "default"), the variable names Temporal's own tools use.
 */
import { Client, Connection } from '@temporalio/client';

export interface TemporalTarget {
  address: string;
  namespace: string;
}

export function temporalTarget(overrides: Partial<TemporalTarget> = {}): TemporalTarget {
  return {
    address: overrides.address ?? process.env.TEMPORAL_ADDRESS ?? 'localhost:7233',
    namespace: overrides.namespace ?? process.env.TEMPORAL_NAMESPACE ?? 'default',
  };
}

export async function connectClient(target = temporalTarget()): Promise<Client> {
  const connection = await Connection.connect({ address: target.address, connectTimeout: '5s' });
  return new Client({ connection, namespace: target.namespace });
}

/** The Web UI address for a workflow, assuming the dev server's UI port (8233) next to its gRPC port. */
export function webUiLink(workflowId: string, target = temporalTarget()): string {
  const base = process.env.WMSS_UI_URL ?? `http://${target.address.split(':')[0]}:8233`;
  return `${base}/namespaces/${encodeURIComponent(target.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
