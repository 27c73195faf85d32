/**
 * The job field tables of docs/kernel-protocol.md, generated from the zod job schemas (the same
 * JSON Schema the kernels validate against) and the config → job mapping of each step.
 */
import { z } from 'zod';
import { common } from '../pipeline/jobFields';
import { KERNEL_JOBS, type KernelVerb } from '../pipeline/kernelJobs';
import { ENTROPY_CONFIG_KEYS } from '../pipeline/stepDefinitions/entropy';
import { DATASET_CONFIG_KEYS, EVAL_CONFIG_KEYS } from '../pipeline/stepDefinitions/evaluate';
import { JOINT_CONFIG_KEYS } from '../pipeline/stepDefinitions/joint';
import { SFT_CONFIG_KEYS } from '../pipeline/stepDefinitions/sft';
import { trainingJobShape } from '../pipeline/stepDefinitions/training';
import { range, type JsonSchema } from './jsonSchemaText';

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => `\`${JSON.stringify(v)}\``).join(' \\| ');
  if (s.anyOf) return s.anyOf.map(typeOf).join(' \\| ');
  if (s.type === 'array') return `array of ${s.items ? typeOf(s.items) : 'any'}`;
  if (s.type === 'object' && s.properties) return `{${Object.keys(s.properties).join(', ')}}`;
  return (Array.isArray(s.type) ? s.type.join(' \\| ') : (s.type ?? 'any')) + range(s);
}

/** What an absent field means: its default, required, or null. */
function absent(s: JsonSchema, required: boolean): string {
  if (s.default !== undefined) return `\`${JSON.stringify(s.default)}\``;
  return required ? '**required**' : 'null';
}

const escape = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** Rows of `fields`; `configKeys`: job field → config key maps (nested fields as `datasets[].name`). */
function table(schema: JsonSchema, fields: string[], configKeys: Record<string, string>[], prefix = ''): string[] {
  const out: string[] = [];
  for (const field of fields) {
    const s = schema.properties![field];
    const name = `${prefix}${field}`;
    const keys = [...new Set(configKeys.map((m) => m[name]).filter(Boolean))].map((k) => `\`${k}\``).join(', ');
    out.push(
      `| \`${name}\` | ${typeOf(s)} | ${absent(s, schema.required?.includes(field) ?? false)} | ${keys || '–'} | ${escape(s.description ?? '')} |`,
    );
    const items = s.type === 'array' ? s.items : undefined;
    if (items?.properties) out.push(...table(items, Object.keys(items.properties), configKeys, `${name}[].`));
  }
  return out;
}

const schemaOf = (verb: KernelVerb) => z.toJSONSchema(KERNEL_JOBS[verb], { io: 'input' }) as JsonSchema;
const HEADER = ['| field | type | when absent | from config | meaning |', '|---|---|---|---|---|'];
const commonFields = Object.keys(common);
const trainingFields = Object.keys(trainingJobShape).filter((f) => !commonFields.includes(f));

/** One table per block of docs/kernel-protocol.md (`<!-- job-fields:<name>:start -->`). */
export function jobFieldTables(): Record<string, string> {
  const own = (verb: KernelVerb, skip: string[] = []) =>
    Object.keys(schemaOf(verb).properties!).filter((f) => !commonFields.includes(f) && !skip.includes(f));
  const block = (verb: KernelVerb, fields: string[], keys: Record<string, string>[] = []) =>
    [...HEADER, ...table(schemaOf(verb), fields, keys)].join('\n');
  return {
    common: block('sft', commonFields, [SFT_CONFIG_KEYS, JOINT_CONFIG_KEYS]),
    'make-tiny': block('make-tiny', own('make-tiny')),
    entropy: block('entropy', own('entropy'), [ENTROPY_CONFIG_KEYS, { model_path: 'baseModel' }]),
    training: block('sft', trainingFields, [SFT_CONFIG_KEYS, JOINT_CONFIG_KEYS]),
    sft: block('sft', own('sft', trainingFields), [SFT_CONFIG_KEYS]),
    joint: block('joint', own('joint', trainingFields), [JOINT_CONFIG_KEYS]),
    evaluate: block('evaluate', own('evaluate'), [EVAL_CONFIG_KEYS, DATASET_CONFIG_KEYS]),
    'export-onnx': block('export-onnx', own('export-onnx')),
  };
}
