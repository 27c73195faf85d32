/**
 * Reading safetensors headers (8-byte little-endian header length, JSON header, data section) and
 * listing the tensors of a Hugging Face model directory, without touching tensor data.
 * Every check names the file and, where it applies, the tensor key.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { invalidInput } from './failures';
import { openInput } from './inputFiles';

/** Bytes per element of each dtype safetensors defines (sub-byte types are not supported here). */
export const DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

export const Dtype = z.enum(Object.keys(DTYPE_BYTES) as [keyof typeof DTYPE_BYTES, ...(keyof typeof DTYPE_BYTES)[]]);
export type Dtype = z.infer<typeof Dtype>;

const offset = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
export const TensorInfo = z
  .object({
    dtype: Dtype,
    shape: z.array(z.number().int().nonnegative()),
    data_offsets: z.tuple([offset, offset]),
  })
  .strict();
export type TensorInfo = z.infer<typeof TensorInfo>;

const Metadata = z.record(z.string(), z.string());

/** The safetensors format caps the header at 100 MB; more means a corrupt or foreign file. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  /** Absolute byte offset of the data section (8 + header length). */
  dataStart: number;
  metadata?: Record<string, string>;
  /** Tensors in header order. */
  tensors: Map<string, TensorInfo>;
}

/** Where one tensor's bytes are: enough to copy it without reading the header again. */
export interface TensorLocation {
  /** The tensor's key in the file. */
  name: string;
  file: string;
  dtype: Dtype;
  shape: number[];
  /** Absolute byte offset in `file`. */
  start: number;
  byteLength: number;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

async function readExactly(handle: fsp.FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf.subarray(0, done);
}

export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  // a FIFO or device named *.safetensors is refused here, before the header read waits on it
  const handle = (await openInput(file, { what: 'safetensors file' })).handle;
  try {
    const fileSize = (await handle.stat()).size;
    const lenBytes = await readExactly(handle, 0, 8);
    if (lenBytes.length < 8)
      throw invalidInput(file, undefined, undefined, `file too short for a safetensors header (${fileSize} bytes)`);
    const headerLen = lenBytes.readBigUInt64LE(0);
    if (headerLen > BigInt(MAX_HEADER_BYTES) || headerLen > BigInt(fileSize - 8)) {
      throw invalidInput(
        file,
        undefined,
        undefined,
        `header length ${headerLen} does not fit the file (${fileSize} bytes; limit ${MAX_HEADER_BYTES})`,
      );
    }
    const n = Number(headerLen);
    const headerBytes = await readExactly(handle, 8, n);
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
    } catch (err) {
      throw invalidInput(file, undefined, undefined, `header is not valid UTF-8 JSON: ${(err as Error).message}`);
    }
    return validateHeader(file, fileSize, 8 + n, parsed);
  } finally {
    await handle.close();
  }
}

function validateHeader(file: string, fileSize: number, dataStart: number, parsed: unknown): SafetensorsHeader {
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw invalidInput(file, undefined, undefined, 'header is not a JSON object');
  const dataSize = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> | undefined;
  for (const [key, raw] of Object.entries(parsed as Record<string, unknown>)) {
    if (key === '__metadata__') {
      const m = Metadata.safeParse(raw);
      if (!m.success) throw invalidInput(file, undefined, key, '__metadata__ must map strings to strings');
      metadata = m.data;
      continue;
    }
    const info = TensorInfo.safeParse(raw);
    if (!info.success) {
      const issue = info.error.issues[0];
      throw invalidInput(
        file,
        undefined,
        key,
        `bad tensor entry: ${issue.path.join('.') || '(entry)'}: ${issue.message}`,
      );
    }
    const [begin, end] = info.data.data_offsets;
    if (end < begin || end > dataSize)
      throw invalidInput(
        file,
        undefined,
        key,
        `data_offsets [${begin}, ${end}] outside the data section (${dataSize} bytes)`,
      );
    const expected = elementCount(info.data.shape) * DTYPE_BYTES[info.data.dtype];
    if (end - begin !== expected) {
      throw invalidInput(
        file,
        undefined,
        key,
        `data_offsets span ${end - begin} bytes but shape [${info.data.shape.join(',')}] of ${info.data.dtype} needs ${expected}`,
      );
    }
    tensors.set(key, info.data);
  }
  const byStart = [...tensors.entries()]
    .filter(([, t]) => t.data_offsets[1] > t.data_offsets[0])
    .sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  for (let i = 1; i < byStart.length; i++) {
    const [prevKey, prev] = byStart[i - 1];
    const [key, cur] = byStart[i];
    if (cur.data_offsets[0] < prev.data_offsets[1])
      throw invalidInput(file, undefined, key, `data overlaps tensor ${prevKey}`);
  }
  return { file, fileSize, dataStart, metadata, tensors };
}

export function tensorLocations(header: SafetensorsHeader): TensorLocation[] {
  return [...header.tensors.entries()].map(([name, t]) => ({
    name,
    file: header.file,
    dtype: t.dtype,
    shape: t.shape,
    start: header.dataStart + t.data_offsets[0],
    byteLength: t.data_offsets[1] - t.data_offsets[0],
  }));
}

export const SINGLE_WEIGHTS = 'model.safetensors';
export const WEIGHTS_INDEX = 'model.safetensors.index.json';

const WeightIndex = z.object({ weight_map: z.record(z.string(), z.string()) }).passthrough();

export interface ModelWeights {
  dir: string;
  /** Weight file names relative to `dir`, in load order. */
  files: string[];
  /** Every tensor, in file then header order. */
  tensors: TensorLocation[];
  byKey: Map<string, TensorLocation>;
}

/** Whether `dir` holds safetensors weights (single file or index). */
export async function hasSafetensors(dir: string): Promise<boolean> {
  const present = await fsp.readdir(dir).catch(() => [] as string[]);
  return present.includes(SINGLE_WEIGHTS) || present.includes(WEIGHTS_INDEX);
}

/** The tensors of a model dir: `model.safetensors`, or `model.safetensors.index.json` and its shards. */
export async function listModelTensors(dir: string): Promise<ModelWeights> {
  const indexFile = path.join(dir, WEIGHTS_INDEX);
  let files: string[];
  let weightMap: Record<string, string> | undefined;
  const indexText = await fsp.readFile(indexFile, 'utf8').catch(() => undefined);
  if (indexText !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(indexText);
    } catch (err) {
      throw invalidInput(indexFile, undefined, undefined, `invalid JSON: ${(err as Error).message}`);
    }
    const index = WeightIndex.safeParse(parsed);
    if (!index.success)
      throw invalidInput(indexFile, undefined, 'weight_map', 'weight_map must map tensor names to shard file names');
    weightMap = index.data.weight_map;
    files = [...new Set(Object.values(weightMap))];
    for (const shard of files) {
      if (shard.includes('..') || path.isAbsolute(shard))
        throw invalidInput(indexFile, undefined, 'weight_map', `shard name ${shard} leaves the model dir`);
      const exists = await fsp.stat(path.join(dir, shard)).then(
        (s) => s.isFile(),
        () => false,
      );
      if (!exists) {
        const example = Object.entries(weightMap).find(([, f]) => f === shard)![0];
        throw invalidInput(
          indexFile,
          undefined,
          example,
          `shard ${shard} listed in the index does not exist in ${dir}`,
        );
      }
    }
  } else if (
    await fsp.stat(path.join(dir, SINGLE_WEIGHTS)).then(
      (s) => s.isFile(),
      () => false,
    )
  ) {
    files = [SINGLE_WEIGHTS];
  } else {
    throw invalidInput(dir, undefined, undefined, `no ${SINGLE_WEIGHTS} or ${WEIGHTS_INDEX} in the model dir`);
  }

  const tensors: TensorLocation[] = [];
  const byKey = new Map<string, TensorLocation>();
  for (const name of files) {
    const header = await readSafetensorsHeader(path.join(dir, name));
    for (const loc of tensorLocations(header)) {
      const seen = byKey.get(loc.name);
      if (seen) throw invalidInput(loc.file, undefined, loc.name, `tensor also present in ${seen.file}`);
      byKey.set(loc.name, loc);
      tensors.push(loc);
    }
  }
  for (const [key, shard] of Object.entries(weightMap ?? {})) {
    if (byKey.get(key)?.file !== path.join(dir, shard))
      throw invalidInput(indexFile, undefined, key, `tensor listed in the index is not in shard ${shard}`);
  }
  return { dir, files, tensors, byKey };
}

/** Every tensor of a model dir (shorthand for listModelTensors(dir).tensors). */
export async function readModelTensors(dir: string): Promise<TensorLocation[]> {
  return (await listModelTensors(dir)).tensors;
}
