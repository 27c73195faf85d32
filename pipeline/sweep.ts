/**
 * Sweeps (docs/sweeps.md): one base run config and a grid of overrides (seeds × λ, or any list of
 * config overrides) expand into one run per point. Which steps the points share follows from
 * which config fields each step's cache key reads (STEP_READS). Sandbox-safe: the sweep workflow
 * validates and expands the spec itself, so a spec started by any client is checked the same way.
 */
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { formatConfigIssues, RunConfig } from './config';
import { relOrAbsPath } from './configFields';
import { ErrorTypes } from './errors';
import { applyPreset } from './presets';
import { stepEnabled, stepRow, STEPS, type StepId } from './steps';
import { CONTINUED_SFT_IGNORES } from './stepDefinitions/continuedSft';

const OverrideValue = z.union([z.number(), z.string(), z.boolean(), z.null()]);

export const SweepSpec = z
  .object({
    sweepName: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$/, '1–48 of letters, digits, . _ - (starting with a letter or digit)')
      .describe('Name of the sweep; its points are runs <sweepName>-p<i>.'),
    sweepDir: relOrAbsPath().describe(
      'Directory of the sweep: point i runs in <sweepDir>/p<i>, the aggregate is <sweepDir>/sweep.json.',
    ),
    config: z
      .record(z.string(), z.unknown())
      .describe('The base run config (runName and runDir are set per point and may be left out).'),
    grid: z
      .record(z.string(), z.array(OverrideValue))
      .optional()
      .describe('Dotted config field (or "seed") → values; the points are every combination.'),
    points: z
      .array(z.record(z.string(), OverrideValue))
      .optional()
      .describe('A list of override sets, one per point (combined with every grid combination when both are given).'),
  })
  .strict();
export type SweepSpec = z.infer<typeof SweepSpec>;

/** `seed` sets every training-side seed at once: SFT, joint training and the weighted draw. */
export const SEED_FIELDS = ['sft.seed', 'joint.seed', 'resample.seed'];

export interface SweepPoint {
  name: string;
  /** the overrides as written, e.g. { "joint.fusionLambda": 0.3, seed: 1 } */
  overrides: Record<string, unknown>;
  config: RunConfig;
}

/** What a sweep spec gets wrong, as { field, message } (the field as the sweep file spells it). */
export class SweepSpecError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

type Schema = {
  def: { type: string; innerType?: Schema; out?: Schema; shape?: Record<string, Schema> };
  shape?: Record<string, Schema>;
};

/** Whether a dotted path names a field of the run config schema (a leaf or a section). */
export function configFieldKnown(dotted: string): boolean {
  let at = RunConfig as unknown as Schema;
  for (const key of dotted.split('.')) {
    // through defaults, optionals and preprocess pipes (eval's legacy field names) to the object
    for (;;) {
      if (['default', 'optional', 'nullable', 'prefault'].includes(at.def.type) && at.def.innerType)
        at = at.def.innerType;
      else if (at.def.type === 'pipe' && at.def.out) at = at.def.out;
      else break;
    }
    const shape = at.shape ?? at.def.shape;
    if (at.def.type !== 'object' || !shape || !Object.hasOwn(shape, key)) return false;
    at = shape[key];
  }
  return true;
}

function checkKey(field: string, key: string): void {
  if (key === 'runName' || key === 'runDir')
    throw new SweepSpecError(
      field,
      `${key} is set per point by the sweep (<sweepName>-p<i> in <sweepDir>/p<i>), not an override`,
    );
  if (key !== 'seed' && !configFieldKnown(key))
    throw new SweepSpecError(
      field,
      `unknown config field "${key}" (a dotted run config field such as joint.fusionLambda, or seed)`,
    );
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let at = target;
  for (const key of keys.slice(0, -1)) {
    const next = at[key];
    at = at[key] = typeof next === 'object' && next !== null && !Array.isArray(next) ? { ...next } : {};
  }
  at[keys[keys.length - 1]] = value;
}

/** The override sets of a spec: the points list × every grid combination; refuses empty ones naming the field. */
export function overrideSets(spec: SweepSpec): Array<Record<string, unknown>> {
  if (spec.grid === undefined && spec.points === undefined)
    throw new SweepSpecError('grid', 'a sweep needs a grid or a points list');
  let combos: Array<Record<string, unknown>> = [{}];
  if (spec.grid !== undefined) {
    const keys = Object.keys(spec.grid);
    if (!keys.length) throw new SweepSpecError('grid', 'empty grid: give at least one field with a list of values');
    for (const key of keys) {
      checkKey(`grid.${key}`, key);
      const values = spec.grid[key];
      if (!values.length) throw new SweepSpecError(`grid.${key}`, 'empty list of values');
      combos = combos.flatMap((c) => values.map((v) => ({ ...c, [key]: v })));
    }
  }
  if (spec.points === undefined) return combos;
  if (!spec.points.length) throw new SweepSpecError('points', 'empty list of points');
  spec.points.forEach((p, i) => Object.keys(p).forEach((key) => checkKey(`points.${i}.${key}`, key)));
  return spec.points.flatMap((p) => combos.map((c) => ({ ...p, ...c })));
}

/** Every point's full run config: base config + preset + overrides, named <sweepName>-p<i> in <sweepDir>/p<i>. */
export function expandSweep(spec: SweepSpec): SweepPoint[] {
  return overrideSets(spec).map((overrides, i) => {
    const raw: Record<string, unknown> = { ...spec.config };
    for (const [key, value] of Object.entries(overrides))
      for (const field of key === 'seed' ? SEED_FIELDS : [key]) setPath(raw, field, value);
    const name = `p${i}`;
    raw.runName = `${spec.sweepName}-${name}`;
    raw.runDir = `${spec.sweepDir.replace(/\/+$/, '')}/${name}`;
    const parsed = RunConfig.safeParse(applyPreset(raw));
    if (!parsed.success)
      throw new SweepSpecError(
        `point ${name} ${JSON.stringify(overrides)}`,
        formatConfigIssues(parsed.error).replace(/\n/g, '; '),
      );
    return { name, overrides, config: parsed.data };
  });
}

/**
 * The config fields each step's cache key reads besides its dependencies' keys (what its activity
 * hashes: activities/stepActivities/<step>Activity.ts). A section stands for all its fields; a
 * field written `!section.field` is one the step's key leaves out of that section.
 */
export const STEP_READS: Partial<Record<StepId, string[]>> = {
  entropy0: ['baseModel', 'dataFile', 'dataFormat', 'entropy'],
  sft: ['baseModel', 'dataFile', 'dataFormat', 'sft'],
  snapshot: ['baseModel'],
  entropy1: ['dataFile', 'dataFormat', 'entropy'],
  merge: ['dataFile', 'dataFormat', 'weighting', 'resample'],
  fuse: ['joint.fusionLambda'],
  joint: ['dataFile', 'dataFormat', 'joint'],
  continuedSft: [
    'dataFile',
    'dataFormat',
    'baseline',
    'joint',
    ...CONTINUED_SFT_IGNORES.map((field) => `!joint.${field}`),
  ],
  extract: ['extract'],
  evaluate: ['eval'],
};

/** What a step reads of a config, as one comparable string (excluded fields deleted). */
function readsOf(config: RunConfig, reads: string[]): string {
  const get = (at: unknown, keys: string[]) => keys.reduce<unknown>((v, k) => (v as Record<string, unknown>)?.[k], at);
  const picked: Record<string, unknown> = {};
  for (const field of reads.filter((f) => !f.startsWith('!'))) {
    const value = get(config, field.split('.'));
    picked[field] = value === undefined ? null : JSON.parse(JSON.stringify(value));
  }
  for (const excluded of reads.filter((f) => f.startsWith('!')).map((f) => f.slice(1).split('.'))) {
    const section = picked[excluded.slice(0, -1).join('.')];
    if (typeof section === 'object' && section !== null)
      delete (section as Record<string, unknown>)[excluded[excluded.length - 1]];
  }
  return JSON.stringify(picked);
}

/**
 * The steps every point would run with identical inputs: the step reads the same config values
 * in all points and every step it needs is shared too. The ONNX exports (and any step not in
 * STEP_READS) are never shared.
 */
export function sharedSteps(configs: RunConfig[]): StepId[] {
  const shared = new Set<StepId>();
  for (const row of STEPS) {
    const reads = STEP_READS[row.id];
    if (!reads || !configs.every((c) => stepEnabled(row, c))) continue;
    const same = configs.every((c) => readsOf(c, reads) === readsOf(configs[0], reads));
    // a dependency counts when it is shared, or when no point runs it (an ONNX export of a torch run)
    const needsShared = row.needs.every((id) => shared.has(id) || configs.every((c) => !stepEnabled(stepRow(id), c)));
    if (same && needsShared) shared.add(row.id);
  }
  return STEPS.filter((r) => shared.has(r.id)).map((r) => r.id);
}

/** Where a point's run dir is seeded from: an earlier point (its index) and the steps it gives. */
export interface SeedSource {
  donor: number;
  steps: StepId[];
}

/**
 * Each point's seed sources: every step it shares with some earlier point comes from one of them.
 * The earlier point it shares the most with gives all it can (the earliest on a tie), then the
 * one that gives the most of what is left, and so on; [] for the first point and for one that
 * shares nothing. In a seeds × λ grid the first point of each seed takes steps 0 and 4 from p0,
 * and the seed's other λ values take steps 0–4 and 5c from that point: every step runs once per
 * distinct set of inputs.
 */
export function seedSources(configs: RunConfig[]): SeedSource[][] {
  return configs.map((config, i) => {
    const shares = configs.slice(0, i).map((other) => sharedSteps([other, config]));
    const left = new Set(shares.flat());
    const sources: SeedSource[] = [];
    while (left.size) {
      let best: SeedSource | undefined;
      shares.forEach((steps, donor) => {
        const gives = steps.filter((id) => left.has(id));
        if (gives.length > (best?.steps.length ?? 0)) best = { donor, steps: gives };
      });
      sources.push(best!);
      best!.steps.forEach((id) => left.delete(id));
    }
    return sources;
  });
}

/** The spec and its points, or a non-retryable InvalidConfig failure naming the field. */
export function checkSweepSpec(input: unknown): { spec: SweepSpec; points: SweepPoint[] } {
  const fail = (field: string | null, message: string) =>
    ApplicationFailure.create({
      type: ErrorTypes.InvalidConfig,
      nonRetryable: true,
      message: `invalid sweep: ${field ? `${field}: ` : ''}${message}`,
      details: [{ file: null, line: null, field }],
    });
  const parsed = SweepSpec.safeParse(input);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw fail(first?.path.length ? first.path.join('.') : null, formatConfigIssues(parsed.error));
  }
  try {
    return { spec: parsed.data, points: expandSweep(parsed.data) };
  } catch (err) {
    if (err instanceof SweepSpecError) throw fail(err.field, err.message.slice(err.field.length + 2));
    throw err;
  }
}
