/**
 * Writes a new safetensors file from tensors of existing ones: each tensor's byte range is
 * streamed from its source (renamed, optionally cast bf16 ↔ f32 on the way), so a model is never
 * held in memory. The read stream reads ahead (8 MiB) while the previous chunk is written, so a
 * plain copy runs at disk speed.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import { throwIfCancelled } from './heartbeat';
import { ChunkCaster, castPair } from './dtypeCast';
import { invalidInput } from './failures';
import { isWriteRefused, withPath } from './fsFailures';
import { DTYPE_BYTES, elementCount, type Dtype, type TensorInfo, type TensorLocation } from './safetensors';

const COPY_CHUNK = 8 << 20;

export interface TensorToWrite {
  /** Tensor key in the new file. */
  name: string;
  source: TensorLocation;
  /** dtype in the new file; default the source's. Only BF16 ↔ F32 conversions exist. */
  dtype?: Dtype;
}

export interface WriteOptions {
  metadata?: Record<string, string>;
  /** Called with the bytes of tensor data written so far. */
  onBytes?: (bytesSoFar: number) => void;
}

function targetInfo(t: TensorToWrite): { dtype: Dtype; byteLength: number } {
  const dtype = t.dtype ?? t.source.dtype;
  if (dtype !== t.source.dtype && !castPair(t.source.dtype, dtype)) {
    throw invalidInput(
      t.source.file,
      undefined,
      t.source.name,
      `cannot cast ${t.source.dtype} to ${dtype} (only BF16 <-> F32)`,
    );
  }
  return { dtype, byteLength: elementCount(t.source.shape) * DTYPE_BYTES[dtype] };
}

/** Header bytes: JSON padded with spaces to a multiple of 8, so the data section is 8-aligned. */
export function encodeHeader(entries: [string, TensorInfo][], metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  for (const [name, info] of entries) header[name] = info;
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
  const out = Buffer.alloc(8 + Buffer.byteLength(json));
  out.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  out.write(json, 8, 'utf8');
  return out;
}

async function writeAll(handle: fsp.FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) done += (await handle.write(data, done, data.length - done)).bytesWritten;
}

/** Stream one tensor's bytes (cast if asked) to `handle`; returns the bytes written. */
async function copyTensor(handle: fsp.FileHandle, t: TensorToWrite, onChunk: (n: number) => void): Promise<number> {
  const pair = t.dtype && t.dtype !== t.source.dtype ? castPair(t.source.dtype, t.dtype) : undefined;
  const caster = pair ? new ChunkCaster(pair) : undefined;
  const source = createReadStream(t.source.file, {
    start: t.source.start,
    end: t.source.start + t.source.byteLength - 1,
    highWaterMark: COPY_CHUNK,
  });
  let written = 0;
  for await (const chunk of source) {
    // a 16 GB copy is the longest loop of steps 5a and 6: `wmss cancel` must not wait for its end
    throwIfCancelled();
    const out = caster ? caster.push(chunk as Buffer) : (chunk as Buffer);
    await writeAll(handle, out);
    written += out.length;
    onChunk(out.length);
  }
  caster?.finish();
  return written;
}

export async function writeSafetensors(
  outFile: string,
  tensors: TensorToWrite[],
  opts: WriteOptions = {},
): Promise<{ bytes: number; tensors: number }> {
  const entries: [string, TensorInfo][] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (seen.has(t.name)) throw invalidInput(outFile, undefined, t.name, 'two tensors would get the same key');
    seen.add(t.name);
    const { dtype, byteLength } = targetInfo(t);
    entries.push([t.name, { dtype, shape: t.source.shape, data_offsets: [offset, offset + byteLength] }]);
    offset += byteLength;
  }

  const handle = await fsp.open(outFile, 'w');
  let total = 0;
  try {
    await writeAll(handle, encodeHeader(entries, opts.metadata)).catch((err: unknown) =>
      Promise.reject(withPath(err, outFile) as Error),
    );
    for (const [i, t] of tensors.entries()) {
      if (t.source.byteLength === 0) continue;
      const [begin, end] = entries[i][1].data_offsets;
      let written: number;
      try {
        written = await copyTensor(handle, t, (n) => opts.onBytes?.((total += n)));
      } catch (err) {
        // a full disk or read-only target is about the file written, not the source tensor
        if (isWriteRefused(err)) throw withPath(err, outFile);
        throw invalidInput(
          t.source.file,
          undefined,
          t.source.name,
          `copying the tensor failed: ${(err as Error).message}`,
        );
      }
      if (written !== end - begin)
        throw invalidInput(
          t.source.file,
          undefined,
          t.source.name,
          `source ended early: ${written} of ${end - begin} bytes`,
        );
    }
  } finally {
    await handle.close();
  }
  return { bytes: offset, tensors: tensors.length };
}
