/**
 * xoshiro128** 1.1 (Blackman & Vigna), seeded from SplitMix64 as its authors recommend. The
 * stream differs from NumPy's default_rng (PCG64), so the positions drawn differ from the
 * original's for the same seed; the draw is reproducible within wmss-flow.
 */
const MASK64 = (1n << 64n) - 1n;

/** SplitMix64: expands one seed into well-mixed 64-bit words (only used for seeding). */
export function splitMix64(seed: bigint): () => bigint {
  let state = BigInt.asUintN(64, seed);
  return () => {
    state = (state + 0x9e3779b97f4a7c15n) & MASK64;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  };
}

const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));

export class Xoshiro128ss {
  private s = new Uint32Array(4);

  /** From a seed (SplitMix64 words split into 32-bit halves), or a raw state for test vectors. */
  constructor(seed: number | bigint | [number, number, number, number]) {
    if (Array.isArray(seed)) this.s.set(seed);
    else {
      const next = splitMix64(BigInt(seed));
      const a = next();
      const b = next();
      this.s.set([Number(a & 0xffffffffn), Number(a >> 32n), Number(b & 0xffffffffn), Number(b >> 32n)]);
    }
    if (this.s.every((w) => w === 0)) throw new Error('xoshiro128** state must not be all zero');
  }

  nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}
