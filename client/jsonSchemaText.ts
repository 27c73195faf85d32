/** The parts of JSON Schema (as zod writes it) that the generated reference tables read. */
export type JsonSchema = {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
};

/** The schema's bounds, so a reference shows what a field may hold without reading the code. */
export function range(s: JsonSchema): string {
  const low =
    s.exclusiveMinimum !== undefined
      ? `> ${s.exclusiveMinimum}`
      : s.minimum !== undefined && s.minimum > Number.MIN_SAFE_INTEGER
        ? `≥ ${s.minimum}`
        : '';
  const high = s.maximum !== undefined && s.maximum < Number.MAX_SAFE_INTEGER ? `≤ ${s.maximum}` : '';
  return low || high ? ` (${[low, high].filter(Boolean).join(', ')})` : '';
}
