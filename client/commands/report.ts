/**
 * `wmss report <run|run-dir>`: writes <runDir>/report/index.html (self-contained) and
 * <runDir>/report/report.md with its charts as SVG files beside it. Given a run (workflow id or
 * run name) it reads the run dir and the config from the workflow; given a directory it needs no
 * Temporal server and takes the config slices recorded in the step manifests.
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { RunConfig } from '../../pipeline/config';
import { resolveRunTemplates } from '../../pipeline/runTemplates';
import { TemporalScheduledById, TemporalScheduledStartTime } from '../../pipeline/searchAttributes';
import { collectReportData, type ReportData, type ReportExtra } from '../report/collect';
import { stepSpansFromHistory } from './historyProgress';
import { buildCharts } from '../report/charts';
import { renderHtml, renderMarkdown } from '../report/render';
import { resolveWorkflowId } from './resolveRun';

export interface ReportFiles {
  dir: string;
  html: string;
  markdown: string;
  charts: string[];
  data: ReportData;
}

export async function writeReport(runDir: string, extra: ReportExtra = {}): Promise<ReportFiles> {
  const data = await collectReportData(runDir, extra);
  const charts = buildCharts(data);
  const dir = path.join(runDir, 'report');
  mkdirSync(dir, { recursive: true });
  for (const c of charts) writeFileSync(path.join(dir, c.file), c.svg);
  const html = path.join(dir, 'index.html');
  const markdown = path.join(dir, 'report.md');
  writeFileSync(html, renderHtml(data, charts));
  writeFileSync(markdown, renderMarkdown(data, charts));
  return { dir, html, markdown, charts: charts.map((c) => path.join(dir, c.file)), data };
}

/** The run dir and config of a workflow: its input, with the same template resolution as the workflow. */
export async function runOfWorkflow(
  client: Client,
  run: string,
): Promise<{ workflowId: string; runDir: string; config?: RunConfig; runName?: string; spans: ReportExtra['spans'] }> {
  const workflowId = await resolveWorkflowId(client, run);
  const handle = client.workflow.getHandle(workflowId);
  const description = await handle.describe();
  const memo = (description.memo?.config ?? {}) as { runDir?: string; runName?: string };
  let config: RunConfig | undefined;
  const history = await handle.fetchHistory();
  const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  if (payload) {
    const parsed = RunConfig.safeParse(client.options.loadedDataConverter.payloadConverter.fromPayload(payload));
    if (parsed.success) {
      const sa = description.typedSearchAttributes;
      config = resolveRunTemplates(parsed.data, {
        time: sa.get(TemporalScheduledStartTime) ?? description.startTime,
        workflowId,
        scheduled: Boolean(sa.get(TemporalScheduledById)),
      });
    }
  }
  const runDir = memo.runDir ?? config?.runDir;
  if (!runDir)
    throw new Error(`cannot tell the run dir of ${workflowId} (no memo, no valid input); pass the run dir instead`);
  return {
    workflowId,
    runDir,
    config,
    runName: memo.runName ?? config?.runName,
    spans: stepSpansFromHistory(history.events ?? []),
  };
}

/**
 * A run dir is a directory with `.wmss/` (manifests, ownership records, the lock): the report is
 * written into it, so any other directory (a home, a checkout) must not pass as one.
 */
export function isRunDir(arg: string): boolean {
  return (
    existsSync(arg) &&
    statSync(arg).isDirectory() &&
    existsSync(path.join(arg, '.wmss')) &&
    statSync(path.join(arg, '.wmss')).isDirectory()
  );
}
