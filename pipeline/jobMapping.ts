/**
 * Config → kernel job, mechanically: every key of a config section becomes the job field of the
 * same name in snake_case (`sft.gradAccum` → `grad_accum`), nested objects flattened
 * (`sft.parallelism.cpuOffload` → `cpu_offload`). One mapping per section gives three things that
 * therefore cannot drift apart: the job fields of a config value (jobFields), the config key a
 * kernel error about a job field names (configKeys), and the job schema's defaults, which are the
 * config's (withConfigDefaults: a job written by hand runs like one the pipeline built).
 * Pure zod and plain objects: the workflow sandbox loads this through the step definitions.
 */
import { z } from 'zod';

export interface JobMapping {
  /** The section's config key prefix (`sft`, `eval`; empty for top-level keys). */
  section: string;
  /** The section's zod schema: its keys are what the mapping covers. */
  schema: z.ZodType;
  /** Config keys (paths like `parallelism.strategy`) the kernel does not take; say why where the mapping is declared. */
  skip?: readonly string[];
  /** Config key paths whose job field is not the snake_case of their last key. */
  rename?: Readonly<Record<string, string>>;
}

export const jobFieldName = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

type Def = { type: string; innerType?: z.ZodType; defaultValue?: unknown; shape?: Record<string, z.ZodType> };
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** The schema under default/optional/nullable wrappers. */
function unwrap(s: z.ZodType): z.ZodType {
  let inner = s;
  while (['default', 'optional', 'nullable', 'prefault'].includes(defOf(inner).type)) inner = defOf(inner).innerType!;
  return inner;
}

function shapeOf(s: z.ZodType): Record<string, z.ZodType> | undefined {
  const inner = unwrap(s);
  return inner instanceof z.ZodObject ? inner.shape : undefined;
}

interface MappedKey {
  /** Config key path inside the section (`parallelism.strategy`). */
  path: string;
  field: string;
  /** The config key's own schema (for its default). */
  schema: z.ZodType;
}

/** Every config key the mapping covers, in schema order. */
function mappedKeys(m: JobMapping): MappedKey[] {
  const out: MappedKey[] = [];
  const walk = (shape: Record<string, z.ZodType>, prefix: string) => {
    for (const [key, schema] of Object.entries(shape)) {
      const path = prefix ? `${prefix}.${key}` : key;
      if (m.skip?.includes(path)) continue;
      const nested = shapeOf(schema);
      if (nested) walk(nested, path);
      else out.push({ path, field: m.rename?.[path] ?? jobFieldName(key), schema });
    }
  };
  const shape = shapeOf(m.schema);
  if (!shape) throw new Error(`job mapping ${m.section}: the schema is not an object`);
  walk(shape, '');
  return out;
}

/** The job fields of a section's value; unset keys are left out (the job schema's default, or null, applies). */
export function jobFields(m: JobMapping, value: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { path, field } of mappedKeys(m)) {
    const v = path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], value);
    if (v !== undefined) out[field] = v;
  }
  return out;
}

/** Job field → the config key it is built from (`max_length` → `sft.maxLength`). */
export function configKeys(m: JobMapping): Record<string, string> {
  return Object.fromEntries(mappedKeys(m).map(({ path, field }) => [field, m.section ? `${m.section}.${path}` : path]));
}

/**
 * The job shape with the config's default on every field the mapping fills. A mapped field the
 * job shape lacks throws when the module loads: the config and the kernel's job disagree.
 * The returned type is the given shape's: the pipeline always sends these fields; the defaults
 * serve jobs written by hand (tests, benches) and the Python side (job_schema.json).
 */
export function withConfigDefaults<S extends Record<string, z.ZodType>>(shape: S, ...mappings: JobMapping[]): S {
  const out: Record<string, z.ZodType> = { ...shape };
  for (const m of mappings) {
    for (const { path, field, schema } of mappedKeys(m)) {
      const target = out[field];
      if (!target)
        throw new Error(
          `config key ${m.section ? `${m.section}.` : ''}${path} maps to job field ${field}, which the job schema lacks`,
        );
      const def = defOf(schema);
      if (def.type === 'default')
        out[field] = (target as z.ZodType & { default: (v: unknown) => z.ZodType }).default(def.defaultValue);
    }
  }
  return out as S;
}
