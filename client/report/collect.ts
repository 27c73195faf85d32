/**
 * Everything the run report shows, read from a run dir: step manifests (timings, cache hits),
 * trainer_state.json of the final Stage-1 and Stage-3 checkpoints (loss history), the entropy and
 * weight files of step 3, the resample statistics, and results/<label>/summary.json of step 7
 * (per set: pass@1, truncation, generated tokens).
 * Missing pieces (a run still going, or one that failed) are listed, not fatal.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import { RunConfig } from '../../pipeline/config';
import { activeSteps, STEPS, type StepId } from '../../pipeline/steps';
import { readManifest, type StepManifest } from '../../activities/store/manifest';
import { readOutcomes } from './paired';
import { statsSection, type StatsSection } from './statsSection';

export interface StepTiming {
  id: StepId;
  number: string;
  title: string;
  startedAt?: string;
  finishedAt?: string;
  ms?: number;
  cacheKey?: string;
  host?: string;
  metrics?: Record<string, number | string>;
  /** Attempts the step took, when known from the workflow's history. */
  attempts?: number;
}

export interface LossPoint {
  step: number;
  loss: number;
  lr?: number;
}

/** One set of one model in results/<label>/summary.json (the onnx backend writes the first four). */
export interface EvalSummary {
  n: number;
  correct: number;
  pass_at_1: number;
  truncated?: number;
  truncation_rate?: number;
  mean_output_tokens?: number;
}

export interface ReportData {
  runDir: string;
  runName?: string;
  workflowId?: string;
  /** The run config as started (from the workflow's input), when known. */
  config?: unknown;
  /** Config slices the steps hashed into their cache keys (always available from manifests). */
  recordedConfig: Record<string, unknown>;
  steps: StepTiming[];
  loss: { stage1?: { checkpoint: string; points: LossPoint[] }; stage3?: { checkpoint: string; points: LossPoint[] } };
  entropy?: { h0: number[]; h1: number[]; dh: number[] };
  weights?: number[];
  /** How many times each drawn position occurs in the resampled set. */
  multiplicity?: number[];
  resampleStats?: Record<string, unknown>;
  /** label (base, m1, wmss) → dataset → summary */
  accuracy: Record<string, Record<string, EvalSummary>>;
  /** label → the eval protocol its summary.json names (paper, lenient; onnx runs: lenient). */
  evalProtocol: Record<string, string>;
  /** Per-problem paired comparisons of step 7's models (client/report/statsSection.ts). */
  paired?: StatsSection;
  missing: string[];
  generatedAt: string;
}

const readJson = (file: string): unknown => JSON.parse(readFileSync(file, 'utf8'));

function readJsonl(file: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The newest checkpoint-N under dir, for runs whose manifest is missing. */
function newestCheckpoint(dir: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  const steps = readdirSync(dir)
    .map((d) => /^checkpoint-(\d+)$/.exec(d))
    .filter((m): m is RegExpExecArray => m !== null && existsSync(path.join(dir, m[0], 'trainer_state.json')))
    .map((m) => Number(m[1]));
  return steps.length ? path.join(dir, `checkpoint-${Math.max(...steps)}`) : undefined;
}

function lossOf(
  runDir: string,
  manifest: StepManifest | undefined,
  fallbackDir: string | undefined,
  missing: string[],
  what: string,
) {
  const rel = manifest?.result.outputs.checkpoint;
  const checkpoint = rel
    ? path.join(runDir, rel)
    : fallbackDir
      ? newestCheckpoint(path.join(runDir, fallbackDir))
      : undefined;
  const file = checkpoint && path.join(checkpoint, 'trainer_state.json');
  if (!file || !existsSync(file)) {
    missing.push(`${what}: no trainer_state.json of a final checkpoint`);
    return undefined;
  }
  const state = readJson(file) as { loss_history?: LossPoint[] };
  return {
    checkpoint: path.relative(runDir, checkpoint),
    points: (state.loss_history ?? []).filter((p) => Number.isFinite(p.loss)),
  };
}

export interface ReportExtra {
  config?: unknown;
  workflowId?: string;
  runName?: string;
  /** Per step, first scheduled to final completion (client/commands/historyProgress.ts): counts every attempt. */
  spans?: Partial<Record<StepId, { startedAt: string; finishedAt: string; attempts: number }>>;
}

export async function collectReportData(runDir: string, extra: ReportExtra = {}): Promise<ReportData> {
  const missing: string[] = [];
  const manifests = new Map<StepId, StepManifest>();
  // The steps of this run: all the config enables, or without a config the default ones and any with a manifest.
  const parsed = RunConfig.safeParse(extra.config);
  const expected = parsed.success ? activeSteps(parsed.data) : STEPS.filter((r) => !r.when);
  for (const row of STEPS) {
    const m = await readManifest(runDir, row.id);
    if (m) manifests.set(row.id, m);
    else if (expected.includes(row))
      missing.push(`step ${row.number} (${row.title}): no manifest, the step has not finished`);
  }
  const rows = STEPS.filter((row) => expected.includes(row) || manifests.has(row.id));
  const steps: StepTiming[] = rows.map((row) => {
    const m = manifests.get(row.id);
    if (!m) return { id: row.id, number: row.number, title: row.title };
    // The manifest's timings are those of the attempt that succeeded; the history's span counts all.
    const span = extra.spans?.[row.id];
    const startedAt = span?.startedAt ?? m.timings.startedAt;
    const finishedAt = span?.finishedAt ?? m.timings.finishedAt;
    const ms = Date.parse(finishedAt) - Date.parse(startedAt);
    return {
      id: row.id,
      number: row.number,
      title: row.title,
      startedAt,
      finishedAt,
      ms,
      cacheKey: m.cacheKey,
      host: m.host,
      metrics: m.result.metrics,
      ...(span && { attempts: span.attempts }),
    };
  });
  const recordedConfig: Record<string, unknown> = {};
  for (const [id, m] of manifests) recordedConfig[id] = m.keyMaterial;

  const config = extra.config as { joint?: { freezeWeak?: boolean } } | undefined;
  const stage3Fallback = config?.joint
    ? A.stage3Dir(config as Parameters<typeof A.stage3Dir>[0])
    : readdirSync(runDir).find((d) => /^stage3_.*_wmss$/.test(d));
  const loss = {
    stage1: lossOf(runDir, manifests.get('sft'), A.STAGE1_DIR, missing, 'Stage-1 loss'),
    stage3: lossOf(runDir, manifests.get('joint'), stage3Fallback, missing, 'Stage-3 loss'),
  };

  const data: ReportData = {
    runDir,
    runName: extra.runName,
    workflowId: extra.workflowId,
    config: extra.config,
    recordedConfig,
    steps,
    loss,
    accuracy: {},
    evalProtocol: {},
    missing,
    generatedAt: new Date().toISOString(),
  };

  const merged = path.join(runDir, A.ENTROPY_MERGED);
  if (existsSync(merged)) {
    const rows = readJsonl(merged);
    const h0 = rows.map((r) => Number(r.entropy_0));
    const h1 = rows.map((r) => Number(r.entropy_1));
    data.entropy = { h0, h1, dh: h1.map((v, i) => v - h0[i]) };
  } else missing.push(`entropy histograms: no ${A.ENTROPY_MERGED}`);

  const weights = path.join(runDir, A.SAMPLE_WEIGHTS);
  if (existsSync(weights)) data.weights = readJsonl(weights).map((r) => Number(r.weight));
  else missing.push(`sample weights: no ${A.SAMPLE_WEIGHTS}`);

  const positions = path.join(runDir, A.RESAMPLED_POSITIONS);
  if (existsSync(positions)) {
    const counts = new Map<string, number>();
    for (const p of readFileSync(positions, 'utf8').split('\n')) if (p.trim()) counts.set(p, (counts.get(p) ?? 0) + 1);
    data.multiplicity = [...counts.values()];
  }
  const stats = path.join(runDir, A.RESAMPLE_STATS);
  if (existsSync(stats)) data.resampleStats = readJson(stats) as Record<string, unknown>;
  else missing.push(`resample statistics: no ${A.RESAMPLE_STATS}`);

  const results = path.join(runDir, A.RESULTS_DIR);
  if (existsSync(results)) {
    for (const label of readdirSync(results).sort()) {
      const file = path.join(results, label, 'summary.json');
      if (!existsSync(file)) continue;
      const summary = readJson(file) as { datasets?: Record<string, EvalSummary>; protocol?: string };
      data.accuracy[label] = summary.datasets ?? {};
      data.evalProtocol[label] = summary.protocol ?? 'lenient';
    }
  }
  if (!Object.keys(data.accuracy).length) missing.push(`accuracy: no ${A.RESULTS_DIR}/<model>/summary.json`);
  else data.paired = statsSection(readOutcomes(runDir));
  return data;
}
