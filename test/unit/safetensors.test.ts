import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { listModelTensors, readSafetensorsHeader, tensorLocations } from '../../activities/store/safetensors';
import { writeSafetensors } from '../../activities/store/safetensorsWriter';
import { bf16ToF32, f32ToBf16 } from '../../activities/store/dtypeCast';
import { ErrorTypes } from '../../pipeline/errors';
import { bf16, f32, readF32, writeSafetensorsFixture } from './helpers/safetensorsFixture';
import { cleanupTmp, failureOf, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

const two = () => ({
  a: { dtype: 'F32', shape: [2, 2], data: f32([1, 2, 3, 4]) },
  b: { dtype: 'BF16', shape: [3], data: bf16([1, -2, 0.5]) },
});

describe('readSafetensorsHeader', () => {
  it('reads a valid header', async () => {
    const file = path.join(tmpDir(), 'm.safetensors');
    writeSafetensorsFixture(file, two());
    const h = await readSafetensorsHeader(file);
    expect([...h.tensors.keys()]).toEqual(['a', 'b']);
    expect(h.tensors.get('b')).toEqual({ dtype: 'BF16', shape: [3], data_offsets: [16, 22] });
    expect(h.metadata).toEqual({ format: 'pt' });
  });

  const bad: [string, (h: Record<string, any>) => void, RegExp, string?][] = [
    ['offsets past the data section', (h) => (h.b.data_offsets = [16, 40]), /outside the data section/, 'b'],
    [
      'overlapping tensors',
      (h) => {
        h.b.data_offsets = [14, 20];
        h.b.shape = [3];
      },
      /overlaps tensor a/,
      'b',
    ],
    ['size not matching shape × dtype', (h) => (h.a.shape = [2, 3]), /needs 24/, 'a'],
    ['unknown dtype', (h) => (h.a.dtype = 'F7'), /bad tensor entry: dtype/, 'a'],
    ['negative shape', (h) => (h.a.shape = [-1, 4]), /bad tensor entry: shape/, 'a'],
    ['bad metadata', (h) => (h.__metadata__ = { n: 1 }), /__metadata__/, '__metadata__'],
  ];
  it.each(bad)('refuses %s, naming file and tensor', async (_name, edit, message, field) => {
    const file = path.join(tmpDir(), 'bad.safetensors');
    writeSafetensorsFixture(file, two(), edit);
    const f = await failureOf(readSafetensorsHeader(file));
    expect(f).toMatchObject({ type: ErrorTypes.InvalidInput, nonRetryable: true });
    expect(f.message).toMatch(message);
    expect(f.message).toContain(file);
    expect(f.details[0]).toMatchObject({ file, field });
  });

  it('refuses short files and header lengths beyond the file', async () => {
    const dir = tmpDir();
    writeFileSync(path.join(dir, 'tiny'), Buffer.from([1, 2, 3]));
    expect((await failureOf(readSafetensorsHeader(path.join(dir, 'tiny')))).message).toMatch(/too short/);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(1000n);
    writeFileSync(path.join(dir, 'liar'), Buffer.concat([len, Buffer.from('{}')]));
    expect((await failureOf(readSafetensorsHeader(path.join(dir, 'liar')))).message).toMatch(/does not fit/);
    writeSafetensorsFixture(path.join(dir, 'trunc'), two(), undefined, 2);
    expect((await failureOf(readSafetensorsHeader(path.join(dir, 'trunc')))).message).toMatch(
      /outside the data section/,
    );
    writeFileSync(path.join(dir, 'notjson'), Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('[]')]));
    expect((await failureOf(readSafetensorsHeader(path.join(dir, 'notjson')))).message).toMatch(/not a JSON object/);
  });
});

describe('listModelTensors', () => {
  it('reads an index with shards and names a missing shard', async () => {
    const dir = tmpDir();
    writeSafetensorsFixture(path.join(dir, 'model-00001-of-00002.safetensors'), { a: two().a });
    writeSafetensorsFixture(path.join(dir, 'model-00002-of-00002.safetensors'), { b: two().b });
    const index = {
      metadata: {},
      weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' },
    };
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    const m = await listModelTensors(dir);
    expect(m.tensors.map((t) => t.name)).toEqual(['a', 'b']);
    expect(m.byKey.get('b')?.start).toBeGreaterThan(8);

    index.weight_map.b = 'model-00003-of-00003.safetensors';
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    const f = await failureOf(listModelTensors(dir));
    expect(f.type).toBe(ErrorTypes.InvalidInput);
    expect(f.message).toMatch(/shard model-00003-of-00003.safetensors listed in the index does not exist/);
    expect(f.details[0]).toMatchObject({ file: path.join(dir, 'model.safetensors.index.json'), field: 'b' });
  });

  it('says when a dir has no weights', async () => {
    expect((await failureOf(listModelTensors(tmpDir()))).message).toMatch(/no model.safetensors/);
  });
});

describe('writeSafetensors', () => {
  it('round-trips renamed tensors, casting bf16 → f32 exactly and f32 → bf16 with rounding', async () => {
    const dir = tmpDir();
    const src = path.join(dir, 'src.safetensors');
    writeSafetensorsFixture(src, { ...two(), empty: { dtype: 'F32', shape: [0, 3], data: Buffer.alloc(0) } });
    const locs = tensorLocations(await readSafetensorsHeader(src));
    const out = path.join(dir, 'out.safetensors');
    await writeSafetensors(
      out,
      [
        { name: 'x.b', source: locs[1], dtype: 'F32' },
        { name: 'x.a', source: locs[0], dtype: 'BF16' },
        { name: 'x.a32', source: locs[0] },
        { name: 'x.empty', source: locs[2] },
      ],
      { metadata: { format: 'pt' } },
    );
    const h = await readSafetensorsHeader(out);
    expect([...h.tensors.keys()]).toEqual(['x.b', 'x.a', 'x.a32', 'x.empty']);
    expect(h.dataStart % 8).toBe(0);
    const bytes = readFileSync(out);
    const slice = (k: string) =>
      bytes.subarray(h.dataStart + h.tensors.get(k)!.data_offsets[0], h.dataStart + h.tensors.get(k)!.data_offsets[1]);
    expect(readF32(slice('x.b'))).toEqual([1, -2, 0.5]);
    expect(slice('x.a')).toEqual(bf16([1, 2, 3, 4]));
    expect(readF32(slice('x.a32'))).toEqual([1, 2, 3, 4]);
    expect(h.tensors.get('x.empty')).toEqual({
      dtype: 'F32',
      shape: [0, 3],
      data_offsets: [h.tensors.get('x.a32')!.data_offsets[1], h.tensors.get('x.a32')!.data_offsets[1]],
    });
  });

  it('refuses casts other than bf16 <-> f32, naming the tensor', async () => {
    const dir = tmpDir();
    const src = path.join(dir, 'src.safetensors');
    writeSafetensorsFixture(src, { i: { dtype: 'I32', shape: [1], data: Buffer.alloc(4) } });
    const [loc] = tensorLocations(await readSafetensorsHeader(src));
    const f = await failureOf(writeSafetensors(path.join(dir, 'o'), [{ name: 'i', source: loc, dtype: 'F32' }]));
    expect(f.message).toMatch(/cannot cast I32 to F32/);
    expect(f.details[0]).toMatchObject({ field: 'i' });
  });
});

describe('dtype casts', () => {
  it('f32 → bf16 rounds to nearest even and keeps NaN/Inf', () => {
    // 1 + 2^-8 is halfway between two bf16 values: ties to even (1.0); 1 + 3·2^-8 ties up to 1 + 2^-6
    const out = f32ToBf16(new Uint8Array(f32([1 + 2 ** -8, 1 + 3 * 2 ** -8, Infinity, NaN, -0])));
    const back = new Float32Array(bf16ToF32(out).buffer);
    expect(back[0]).toBe(1);
    expect(back[1]).toBe(1 + 2 ** -6);
    expect(back[2]).toBe(Infinity);
    expect(Number.isNaN(back[3])).toBe(true);
    expect(Object.is(back[4], -0)).toBe(true);
  });
});
