/**
 * bf16 ↔ f32 conversion of little-endian tensor bytes, chunk by chunk, so a tensor is cast while
 * it is copied.
 */
import os from 'node:os';
import type { Dtype } from './safetensors';

export type CastPair = 'BF16->F32' | 'F32->BF16';

export function castPair(from: Dtype, to: Dtype): CastPair | undefined {
  const pair = `${from}->${to}`;
  return pair === 'BF16->F32' || pair === 'F32->BF16' ? pair : undefined;
}

/** bf16 is the top half of an f32: widening is exact. */
export function bf16ToF32(src: Uint8Array): Uint8Array {
  const n = src.length >> 1;
  const aligned = src.byteOffset % 2 === 0 ? src : Uint8Array.from(src);
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = halves[i] << 16;
  return new Uint8Array(out.buffer);
}

/** f32 → bf16 with round-to-nearest-even (as torch does); NaN stays a quiet NaN with its sign. */
export function f32ToBf16(src: Uint8Array): Uint8Array {
  const n = src.length >> 2;
  const aligned = src.byteOffset % 4 === 0 ? src : Uint8Array.from(src);
  const words = new Uint32Array(aligned.buffer, aligned.byteOffset, n);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const bits = words[i];
    if ((bits & 0x7fffffff) > 0x7f800000) out[i] = (bits >>> 16) | 0x0040;
    else out[i] = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
  }
  return new Uint8Array(out.buffer);
}

/** Converts a tensor's bytes chunk by chunk; an element split across chunks waits for the next one. */
export class ChunkCaster {
  private tail: Buffer = Buffer.alloc(0);
  private readonly inSize: number;
  private readonly convert: (src: Uint8Array) => Uint8Array;

  constructor(pair: CastPair) {
    if (os.endianness() !== 'LE') throw new Error('dtype casting assumes a little-endian host');
    this.inSize = pair === 'BF16->F32' ? 2 : 4;
    this.convert = pair === 'BF16->F32' ? bf16ToF32 : f32ToBf16;
  }

  push(chunk: Buffer): Uint8Array {
    const data = this.tail.length ? Buffer.concat([this.tail, chunk]) : chunk;
    const whole = data.length - (data.length % this.inSize);
    this.tail = Buffer.from(data.subarray(whole));
    return this.convert(data.subarray(0, whole));
  }

  /** Throws when the bytes ended mid-element. */
  finish(): void {
    if (this.tail.length) throw new Error(`tensor bytes end mid-element (${this.tail.length} stray bytes)`);
  }
}
