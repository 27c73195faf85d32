/** The run config reference in Markdown, generated from the zod schema's own descriptions. */
import { z } from 'zod';
import { RunConfig } from '../pipeline/config';
import { range, type JsonSchema } from './jsonSchemaText';

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (s.anyOf) return s.anyOf.map(typeOf).join(' \\| ');
  if (s.type === 'array') return `array of ${s.items ? typeOf(s.items) : 'any'}`;
  return (Array.isArray(s.type) ? s.type.join(' \\| ') : (s.type ?? 'any')) + range(s);
}

function rows(schema: JsonSchema, prefix: string, required: string[], out: string[]): void {
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (prop.type === 'object' && prop.properties) {
      out.push(`| \`${name}\` | object | | ${prop.description ?? ''} |`);
      rows(prop, name, prop.required ?? [], out);
      continue;
    }
    const def =
      prop.default !== undefined ? `\`${JSON.stringify(prop.default)}\`` : required.includes(key) ? '**required**' : '';
    out.push(`| \`${name}\` | ${typeOf(prop)} | ${def} | ${(prop.description ?? '').replace(/\|/g, '\\|')} |`);
  }
}

export function configReference(): string {
  const schema = z.toJSONSchema(RunConfig, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const out = ['| field | type | default | meaning |', '|---|---|---|---|'];
  rows(schema, '', schema.required ?? [], out);
  return out.join('\n');
}
