/**
 * Date templates in a run config's paths, resolved by the workflow when a run starts, so one
 * config can drive scheduled retraining: `"dataFile": "/data/am/{date}.jsonl"` reads the file of
 * the scheduled day, and every scheduled run writes into its own run dir.
 *
 * Pure and deterministic (no clock, no I/O): the workflow passes the scheduled time (the search
 * attribute TemporalScheduledStartTime that a Schedule sets on the runs it starts) or, for a run
 * started by hand, the workflow's start time from its history.
 *
 * Tokens (UTC):
 *   {date}        2026-11-25
 *   {datetime}    2026-11-25T090000Z       (second resolution; file-name safe)
 *   {workflowId}  the run's workflow id
 * Resolved in runDir, baseModel, dataFile and the eval dataset paths. A scheduled run whose runDir
 * has no token gets `/{datetime}` appended, so two scheduled runs never share a run dir; put
 * `{date}` in runDir yourself to give each day one run dir (a second run that day then continues
 * the first one's work and reuses its finished steps).
 */
import type { RunConfig } from './config';
import { withBenchmarkPaths } from './stepDefinitions/evaluate';

export const TEMPLATE_TOKENS = ['{date}', '{datetime}', '{workflowId}'] as const;

export interface TemplateContext {
  /** The scheduled time of a scheduled run, else the workflow's start time. */
  time: Date;
  workflowId: string;
  /** True when a Schedule started the run (TemporalScheduledById is set). */
  scheduled: boolean;
}

const pad = (n: number) => String(n).padStart(2, '0');

export function templateValues(ctx: TemplateContext): Record<(typeof TEMPLATE_TOKENS)[number], string> {
  const t = ctx.time;
  const date = `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
  return {
    '{date}': date,
    '{datetime}': `${date}T${pad(t.getUTCHours())}${pad(t.getUTCMinutes())}${pad(t.getUTCSeconds())}Z`,
    '{workflowId}': ctx.workflowId,
  };
}

export function hasTemplate(s: string): boolean {
  return TEMPLATE_TOKENS.some((token) => s.includes(token));
}

export function fillTemplate(s: string, ctx: TemplateContext): string {
  let out = s;
  for (const [token, value] of Object.entries(templateValues(ctx))) out = out.split(token).join(value);
  return out;
}

/** The config with every template token replaced (and a per-run runDir for scheduled runs). */
export function resolveRunTemplates(config: RunConfig, ctx: TemplateContext): RunConfig {
  const runDirTemplate =
    ctx.scheduled && !hasTemplate(config.runDir) ? `${config.runDir.replace(/\/+$/, '')}/{datetime}` : config.runDir;
  const fill = (s: string) => fillTemplate(s, ctx);
  return {
    ...config,
    runDir: fill(runDirTemplate),
    baseModel: fill(config.baseModel),
    dataFile: fill(config.dataFile),
    eval: withBenchmarkPaths(config.eval, fill),
  };
}
