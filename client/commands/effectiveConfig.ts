/**
 * `wmss plan`'s list of effective values: every leaf of the resolved config with where it came
 * from (the config file with its line, the preset, or the default), so a preset never acts unseen.
 */
import type { RunConfig } from '../../pipeline/config';
import { sourceOf } from '../../pipeline/presets';
import type { LoadedRunConfig } from '../runConfigFile';

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Dotted path → value of every leaf (arrays are leaves: eval.benchmarks is one value). */
export function configLeaves(value: unknown, prefix = ''): Array<[string, unknown]> {
  if (!isRecord(value)) return [[prefix, value]];
  return Object.entries(value).flatMap(([key, child]) => configLeaves(child, prefix ? `${prefix}.${key}` : key));
}

export interface EffectiveValue {
  field: string;
  value: unknown;
  source: string;
}

export function effectiveValues(
  loaded: Pick<LoadedRunConfig, 'raw' | 'where' | 'file'>,
  config: RunConfig,
): EffectiveValue[] {
  return configLeaves(config).map(([field, value]) => {
    const source = sourceOf(loaded.raw, field);
    const pos = source === 'config' ? loaded.where(field) : undefined;
    return { field, value, source: pos ? `${loaded.file}:${pos.line}` : source };
  });
}

export function renderEffectiveValues(values: EffectiveValue[]): string {
  const shown = (v: unknown) => {
    const text = JSON.stringify(v) ?? 'unset';
    return text.length > 60 ? `${text.slice(0, 57)}…` : text;
  };
  const width = Math.max(...values.map((v) => v.field.length));
  return [
    'effective values (from the config file, its preset, or the default):',
    ...values.map((v) => `  ${v.field.padEnd(width)}  ${shown(v.value).padEnd(24)} ${v.source}`),
  ].join('\n');
}
