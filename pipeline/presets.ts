/**
 * Presets: named sets of values for the fields where the original code and the paper differ
 * (docs/method.md#presets). A preset fills only what the config does not write itself, so an
 * explicit field always wins; defaults fill what neither gives. Plain data: the workflow sandbox
 * applies it too (a config started with Temporal's own CLI still has its preset unresolved).
 */
import { z } from 'zod';

export const PresetName = z.enum(['original', 'paper']);
export type PresetName = z.infer<typeof PresetName>;

/** Dotted field → value. Each preset names every field that tells the two apart. */
export const PRESETS: Record<PresetName, Record<string, string | number | boolean>> = {
  // what the authors' published code runs: its weight formula, unshifted entropy positions,
  // duplicates kept, the strong branch extracted and written in bf16
  original: {
    'weighting.formula': 'repo',
    'entropy.definition': 'repo',
    'resample.dedupe': false,
    'extract.submodelIdx': 1,
    'extract.dtype': 'bfloat16',
  },
  // what the paper states: its formula with deduplicated resampling, shifted entropy positions
  paper: {
    'weighting.formula': 'paper',
    'entropy.definition': 'shifted',
    'resample.dedupe': true,
    'extract.submodelIdx': 1,
  },
};

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The value at a dotted path of a raw config, or undefined where it is not written. */
export function valueAt(raw: unknown, dotted: string): unknown {
  let at: unknown = raw;
  for (const key of dotted.split('.')) {
    if (!isRecord(at)) return undefined;
    at = at[key];
  }
  return at;
}

/**
 * The raw config with its preset's values filled in where the config writes none. Anything that
 * is not a config with a known preset comes back unchanged: the schema then names what is wrong
 * (an unknown preset is refused as `preset: Invalid option …`).
 */
export function applyPreset(raw: unknown): unknown {
  if (!isRecord(raw)) return raw;
  const parsed = PresetName.safeParse(raw.preset);
  if (!parsed.success) return raw;
  const out: Record<string, unknown> = { ...raw };
  for (const [dotted, value] of Object.entries(PRESETS[parsed.data])) {
    const keys = dotted.split('.');
    let parent = out;
    let blocked = false;
    for (const key of keys.slice(0, -1)) {
      const child = parent[key];
      if (child === undefined) parent[key] = {};
      else if (!isRecord(child)) {
        blocked = true; // a section written as something else: the schema refuses it, naming it
        break;
      } else parent[key] = { ...child };
      parent = parent[key] as Record<string, unknown>;
    }
    const last = keys[keys.length - 1];
    if (!blocked && parent[last] === undefined) parent[last] = value;
  }
  return out;
}

/** Where an effective value came from: the config itself, its preset, or the schema's default. */
export type ValueSource = 'config' | `preset ${PresetName}` | 'default';

export function sourceOf(raw: unknown, dotted: string): ValueSource {
  if (valueAt(raw, dotted) !== undefined) return 'config';
  const preset = PresetName.safeParse(valueAt(raw, 'preset'));
  if (preset.success && dotted in PRESETS[preset.data]) return `preset ${preset.data}`;
  return 'default';
}
