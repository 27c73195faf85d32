/**
 * Step 3a: read the two entropy files into columns and join them on idx (docs/method.md#joining-the-two-entropy-files).
 * Unlike the original (a dict update that silently keeps half-joined rows), every mismatch is an
 * error naming file, line and field: a sample scored by one model only cannot be weighted.
 */
import { forEachJsonl, type JsonlOptions } from '../store/jsonl';
import { invalidInput } from '../store/failures';
import { Float64Column } from './columns';

export type EntropyField = 'entropy_0' | 'entropy_1';

export interface EntropyColumns {
  file: string;
  field: EntropyField;
  idx: Float64Array;
  entropy: Float64Array;
  /** 1-based line of each row, for error messages. */
  line: Float64Array;
}

export interface MergedEntropies {
  /** Ascending, unique. */
  idx: Float64Array;
  h0: Float64Array;
  h1: Float64Array;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing (the field is missing)';
  if (typeof value === 'string')
    return `a string (${JSON.stringify(value.slice(0, 20))}); NaN/Inf cannot be JSON numbers`;
  if (value === null) return 'null (a NaN or Inf written as null?)';
  return `${typeof value} ${JSON.stringify(value)?.slice(0, 20)}`;
}

/** Parse one entropy row; every malformed field is an InvalidInput naming file, line and field. */
function parseRow(file: string, field: EntropyField, line: number, value: unknown): [number, number] {
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw invalidInput(file, line, undefined, 'expected a JSON object {"idx", "' + field + '"}');
  const row = value as Record<string, unknown>;
  const idx = row.idx;
  if (typeof idx !== 'number' || !Number.isSafeInteger(idx) || idx < 0)
    throw invalidInput(file, line, 'idx', `idx must be a non-negative integer, got ${describe(idx)}`);
  if (!(field in row)) {
    const other = Object.keys(row).filter((k) => k !== 'idx');
    throw invalidInput(
      file,
      line,
      field,
      `missing field ${field}${other.length ? ` (found ${other.join(', ')}: wrong field name?)` : ''}`,
    );
  }
  const h = row[field];
  if (typeof h !== 'number') throw invalidInput(file, line, field, `entropy must be a number, got ${describe(h)}`);
  if (!Number.isFinite(h)) throw invalidInput(file, line, field, `entropy must be finite, got ${h}`);
  if (h < 0) throw invalidInput(file, line, field, `entropy must be >= 0, got ${h}`);
  return [idx, h];
}

export async function readEntropyColumns(
  file: string,
  field: EntropyField,
  opts?: JsonlOptions,
): Promise<EntropyColumns> {
  const idx = new Float64Column();
  const entropy = new Float64Column();
  const line = new Float64Column();
  await forEachJsonl(
    file,
    (value, lineNo) => {
      const [i, h] = parseRow(file, field, lineNo, value);
      idx.push(i);
      entropy.push(h);
      line.push(lineNo);
    },
    opts,
  );
  return { file, field, idx: idx.values(), entropy: entropy.values(), line: line.values() };
}

/** Row order by ascending idx; a repeated idx is an error naming both lines. */
export function sortedRowOrder(cols: EntropyColumns): Uint32Array {
  const n = cols.idx.length;
  const order = new Uint32Array(n);
  for (let r = 0; r < n; r++) order[r] = r;
  let sorted = true;
  for (let r = 1; r < n && sorted; r++) sorted = cols.idx[r] > cols.idx[r - 1];
  if (!sorted) order.sort((a, b) => cols.idx[a] - cols.idx[b] || a - b);
  for (let k = 1; k < n; k++) {
    if (cols.idx[order[k]] === cols.idx[order[k - 1]]) {
      const [first, again] = [order[k - 1], order[k]];
      throw invalidInput(
        cols.file,
        cols.line[again],
        'idx',
        `duplicate idx ${cols.idx[again]} (also on line ${cols.line[first]})`,
      );
    }
  }
  return order;
}

/** Join on idx; both files must hold exactly the same set of idx. */
export function mergeEntropies(e0: EntropyColumns, e1: EntropyColumns): MergedEntropies {
  const o0 = sortedRowOrder(e0);
  const o1 = sortedRowOrder(e1);
  const n = Math.min(o0.length, o1.length);
  const counts = `(${e0.file}: ${o0.length} rows, ${e1.file}: ${o1.length} rows)`;
  const merged: MergedEntropies = { idx: new Float64Array(n), h0: new Float64Array(n), h1: new Float64Array(n) };
  let i = 0;
  let j = 0;
  while (i < o0.length || j < o1.length) {
    const a = i < o0.length ? e0.idx[o0[i]] : Infinity;
    const b = j < o1.length ? e1.idx[o1[j]] : Infinity;
    if (a < b) throw invalidInput(e0.file, e0.line[o0[i]], 'idx', `idx ${a} has no row in ${e1.file} ${counts}`);
    if (b < a) throw invalidInput(e1.file, e1.line[o1[j]], 'idx', `idx ${b} has no row in ${e0.file} ${counts}`);
    merged.idx[i] = a;
    merged.h0[i] = e0.entropy[o0[i]];
    merged.h1[i] = e1.entropy[o1[j]];
    i++;
    j++;
  }
  return merged;
}
