/**
 * What `<run>` means on the command line: a workflow id as given (runs started by `wmss start`,
 * `temporal workflow start --workflow-id …`, or a Schedule, whose ids end in the scheduled time),
 * else `wmss-<name>`, else the newest run whose search attribute WmssRunName is the name.
 * Only the workflow id is needed afterwards: the progress query answers everything else.
 */
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import { TemporalScheduledById, WmssRunName, WmssStatus, WmssStep } from '../../pipeline/searchAttributes';
import { WORKFLOW_TYPE, workflowIdFor } from '../../pipeline/workflowApi';

async function exists(client: Client, workflowId: string): Promise<boolean> {
  try {
    await client.workflow.getHandle(workflowId).describe();
    return true;
  } catch (err) {
    if ((err as Error).name === 'WorkflowNotFoundError') return false;
    throw err;
  }
}

const quote = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

export async function resolveWorkflowId(client: Client, run: string): Promise<string> {
  if (await exists(client, run)) return run;
  if (!run.startsWith('wmss-') && (await exists(client, workflowIdFor(run)))) return workflowIdFor(run);
  for await (const wf of client.workflow.list({ query: `WmssRunName=${quote(run)}`, pageSize: 1 }))
    return wf.workflowId;
  throw new Error(
    `no run "${run}": no workflow has that id, none is called ${workflowIdFor(run)}, and no run has WmssRunName=${quote(run)} (list them with \`wmss status\`)`,
  );
}

export interface RunListing {
  workflowId: string;
  runName?: string;
  status: string;
  step?: string;
  wmssStatus?: string;
  startTime: Date;
  closeTime?: Date;
  scheduledBy?: string;
}

/** The newest pipeline runs (any start method), for `wmss status` without an argument. */
export async function listRuns(
  client: Client,
  limit = 20,
  query = `WorkflowType=${quote(WORKFLOW_TYPE)}`,
): Promise<RunListing[]> {
  const out: RunListing[] = [];
  for await (const wf of client.workflow.list({ query, pageSize: limit })) {
    out.push(listing(wf));
    if (out.length >= limit) break;
  }
  return out;
}

function listing(wf: WorkflowExecutionInfo): RunListing {
  const sa = wf.typedSearchAttributes;
  const scheduledBy = sa.get(TemporalScheduledById);
  return {
    workflowId: wf.workflowId,
    runName: sa.get(WmssRunName),
    status: wf.status.name,
    step: sa.get(WmssStep),
    wmssStatus: sa.get(WmssStatus),
    startTime: wf.startTime,
    closeTime: wf.closeTime,
    scheduledBy,
  };
}

export function renderRunList(runs: RunListing[]): string {
  if (!runs.length) return 'no wmssPipeline runs on this server (start one with `wmss start <config>`)';
  const rows = runs.map((r) => [
    r.workflowId,
    r.runName ?? '',
    r.status.toLowerCase(),
    r.step ? `step ${r.step}` : '',
    r.startTime.toISOString().replace('T', ' ').slice(0, 19),
    r.scheduledBy ? `schedule ${r.scheduledBy}` : '',
  ]);
  return table(['workflow id', 'run', 'status', 'running', 'started (UTC)', 'started by'], rows);
}

/** A plain text table: columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (c ?? '').padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
