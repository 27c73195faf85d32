/**
 * Property tests (fast-check) of the two readers every untrusted byte goes through: the JSONL
 * reader (data, entropy and eval files) and the safetensors header reader (model dirs). On any
 * input they return what a plain reference reading of the same bytes gives, or throw the typed,
 * non-retryable InvalidInput naming the file (never another exception, never a hang); valid
 * inputs round-trip.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { forEachJsonl, readJsonl } from '../../activities/store/jsonl';
import {
  DTYPE_BYTES,
  elementCount,
  readSafetensorsHeader,
  tensorLocations,
  type SafetensorsHeader,
} from '../../activities/store/safetensors';
import { writeSafetensors } from '../../activities/store/safetensorsWriter';
import { ErrorTypes } from '../../pipeline/errors';
import { cleanupTmp, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

// Hundreds of generated files per property: a few seconds when the machine is quiet, more than
// jest's default 5 s beside the integration suites on two cores (seen once: a timeout, not a failure).
jest.setTimeout(60_000);

const RUNS = { numRuns: 300 };
let counter = 0;
const dir = () => tmpDir('wmss-fuzz-');
let work: string;
beforeAll(() => {
  work = dir();
});
const fileWith = (bytes: Uint8Array, ext: string) => {
  const file = path.join(work, `f${counter++}.${ext}`);
  writeFileSync(file, bytes);
  return file;
};

type Outcome = { records: { line: number; value: unknown }[]; error?: { line: number | null; kind: string } };

/** What a JSONL file holds, read the simplest way: whole file, line by line, first problem wins. */
function referenceJsonl(bytes: Uint8Array, maxLineBytes: number): Outcome {
  let buf = Buffer.from(bytes);
  if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) buf = buf.subarray(3);
  const records: Outcome['records'] = [];
  const lines: Buffer[] = [];
  for (let start = 0; ;) {
    const end = buf.indexOf(0x0a, start);
    lines.push(buf.subarray(start, end < 0 ? buf.length : end));
    if (end < 0) break;
    start = end + 1;
  }
  // a final newline ends the last line; it does not start an empty one worth reporting
  for (const [i, raw] of lines.entries()) {
    const line = i + 1;
    if (raw.length > maxLineBytes) return { records, error: { line, kind: 'line longer than' } };
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
    } catch {
      return { records, error: { line, kind: 'invalid UTF-8' } };
    }
    if ([...text].every((ch) => ch === ' ' || ch === '\t' || ch === '\r')) continue;
    try {
      records.push({ line, value: JSON.parse(text) });
    } catch {
      return { records, error: { line, kind: 'invalid JSON' } };
    }
  }
  return { records };
}

/** What readJsonl (and forEachJsonl) make of the file; any non-InvalidInput exception fails the test. */
async function readerOutcome(
  file: string,
  opts: { maxLineBytes: number; chunkBytes: number },
): Promise<[Outcome, Outcome]> {
  const run = async (collect: (push: (line: number, value: unknown) => void) => Promise<void>): Promise<Outcome> => {
    const records: Outcome['records'] = [];
    try {
      await collect((line, value) => records.push({ line, value }));
      return { records };
    } catch (err) {
      const e = err as {
        type?: string;
        nonRetryable?: boolean;
        message: string;
        details?: { file: string; line: number | null }[];
      };
      if (e.type !== ErrorTypes.InvalidInput || e.nonRetryable !== true) throw err;
      expect(e.details?.[0].file).toBe(file);
      expect(e.message.startsWith(e.details![0].line === null ? `${file}: ` : `${file}:${e.details![0].line}: `)).toBe(
        true,
      );
      const kind =
        ['line longer than', 'invalid UTF-8', 'invalid JSON'].find((k) => e.message.includes(k)) ?? e.message;
      return { records, error: { line: e.details![0].line, kind } };
    }
  };
  return [
    await run(async (push) => {
      for await (const r of readJsonl(file, opts)) push(r.line, r.value);
    }),
    await run((push) => forEachJsonl(file, (value, line) => push(line, value), opts)),
  ];
}

/** Bytes that look like JSONL often enough to get past the first line: JSON-ish tokens, newlines, BOMs, bad UTF-8. */
const jsonlishBytes = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        '{',
        '}',
        '[',
        ']',
        '"',
        ':',
        ',',
        ' ',
        '\t',
        '\r',
        '\n',
        '\n',
        '\n',
        '1',
        '-0',
        '1e400',
        'true',
        'null',
        'NaN',
        '\u00e9',
        '\u2028',
        '\uFEFF',
        '{"a":1}',
        '{"idx": 3, "m": [1, "x"]}',
      ),
      fc.string({ maxLength: 6 }),
    ),
    { maxLength: 40 },
  )
  .chain((parts) =>
    fc.tuple(
      fc.constant(Buffer.from(parts.join(''))),
      fc.array(fc.tuple(fc.nat(), fc.constantFrom(0xff, 0xc3, 0xe2, 0x80, 0x0a, 0x00)), { maxLength: 3 }),
      fc.boolean(),
    ),
  )
  .map(([buf, pokes, bom]) => {
    const out = Buffer.from(buf);
    for (const [at, byte] of pokes) if (out.length) out[at % out.length] = byte;
    return bom ? Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), out]) : out;
  });

describe('readJsonl / forEachJsonl', () => {
  it('agree with a reference reading on arbitrary bytes, for any read chunk size and line limit', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(jsonlishBytes, fc.uint8Array({ maxLength: 200 })),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 1, max: 120 }),
        async (bytes, chunkBytes, maxLineBytes) => {
          const file = fileWith(bytes, 'jsonl');
          const [viaGenerator, viaCallback] = await readerOutcome(file, { chunkBytes, maxLineBytes });
          const expected = referenceJsonl(bytes, maxLineBytes);
          expect(viaGenerator).toEqual(expected);
          expect(viaCallback).toEqual(expected);
        },
      ),
      RUNS,
    );
  });

  it('round-trips any JSON values, with blank lines, CRLF, a BOM and no final newline', async () => {
    const blank = fc.constantFrom('', ' ', '\t', '\r', '  \r');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.jsonValue(), fc.array(blank, { maxLength: 2 })), { maxLength: 12 }),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 1, max: 48 }),
        async (rows, crlf, bom, finalNewline, chunkBytes) => {
          const lines: string[] = [];
          const expected: { line: number; value: unknown }[] = [];
          for (const [value, blanks] of rows) {
            lines.push(...blanks);
            lines.push(JSON.stringify(value));
            expected.push({ line: lines.length, value: JSON.parse(JSON.stringify(value)) });
          }
          const text = lines.join(crlf ? '\r\n' : '\n') + (finalNewline && lines.length ? '\n' : '');
          const file = fileWith(Buffer.from((bom ? '\uFEFF' : '') + text), 'jsonl');
          const got: { line: number; value: unknown }[] = [];
          for await (const r of readJsonl(file, { chunkBytes })) got.push(r);
          expect(got).toEqual(expected);
        },
      ),
      RUNS,
    );
  });
});

// ---------------------------------------------------------------- safetensors

const DTYPES = Object.keys(DTYPE_BYTES) as (keyof typeof DTYPE_BYTES)[];

interface Spec {
  name: string;
  dtype: keyof typeof DTYPE_BYTES;
  shape: number[];
}

const tensorSpecs = fc
  .uniqueArray(
    fc.record({
      name: fc.oneof(
        fc.constantFrom('model.norm.weight', 'lm_head.weight', 'a', '__proto__', 'é'),
        fc.string({ minLength: 1, maxLength: 8 }),
      ),
      dtype: fc.constantFrom(...DTYPES),
      shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
    }),
    { selector: (t) => t.name, maxLength: 5 },
  )
  .map((specs) => specs.filter((s) => s.name !== '__metadata__'));

/** A valid file, written by hand (not by the code under test): header JSON, then each tensor's bytes. */
function safetensorsBytes(specs: Spec[], pad = 0): { bytes: Buffer; header: Record<string, unknown> } {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const datas: Buffer[] = [];
  let offset = 0;
  for (const s of specs) {
    const n = elementCount(s.shape) * DTYPE_BYTES[s.dtype];
    const data = Buffer.alloc(n, datas.length + 1);
    header[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [offset, offset + n] };
    offset += n;
    datas.push(data);
  }
  const json = Buffer.from(JSON.stringify(header) + ' '.repeat(pad));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return { bytes: Buffer.concat([len, json, ...datas]), header };
}

/** Either the typed failure naming the file, or a header whose every tensor lies inside the file, sized as its shape says, without overlap. */
async function checkedHeader(file: string, size: number): Promise<SafetensorsHeader | undefined> {
  let header: SafetensorsHeader;
  try {
    header = await readSafetensorsHeader(file);
  } catch (err) {
    const e = err as { type?: string; nonRetryable?: boolean; message: string };
    if (e.type !== ErrorTypes.InvalidInput || e.nonRetryable !== true || !e.message.startsWith(file)) throw err;
    return undefined;
  }
  expect(header.fileSize).toBe(size);
  expect(header.dataStart).toBeGreaterThanOrEqual(8);
  expect(header.dataStart).toBeLessThanOrEqual(size);
  const spans: [number, number][] = [];
  for (const loc of tensorLocations(header)) {
    expect(DTYPES).toContain(loc.dtype);
    expect(loc.start).toBeGreaterThanOrEqual(header.dataStart);
    expect(loc.start + loc.byteLength).toBeLessThanOrEqual(size);
    expect(loc.byteLength).toBe(elementCount(loc.shape) * DTYPE_BYTES[loc.dtype]);
    if (loc.byteLength > 0) spans.push([loc.start, loc.start + loc.byteLength]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1]);
  return header;
}

describe('readSafetensorsHeader', () => {
  it('reads back every valid file exactly', async () => {
    await fc.assert(
      fc.asyncProperty(tensorSpecs, fc.integer({ min: 0, max: 7 }), async (specs, pad) => {
        const { bytes, header } = safetensorsBytes(specs, pad);
        const file = fileWith(bytes, 'safetensors');
        const got = await checkedHeader(file, bytes.length);
        expect(got).toBeDefined();
        expect(got!.metadata).toEqual({ format: 'pt' });
        expect(Object.fromEntries(got!.tensors)).toEqual(
          Object.fromEntries(Object.entries(header).filter(([k]) => k !== '__metadata__')),
        );
      }),
      RUNS,
    );
  });

  it('on arbitrary bytes, and on valid files with flipped, cut, appended or lying bytes: a consistent header or InvalidInput', async () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('append' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
      fc.record({ kind: fc.constant('length' as const), value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
      fc.record({
        kind: fc.constant('lie' as const),
        key: fc.nat(),
        field: fc.constantFrom('begin', 'end', 'shift', 'shape', 'dtype'),
        value: fc.oneof(
          fc.integer({ min: -3, max: 300 }),
          fc.integer({ min: -40, max: 40 }),
          fc.double(),
          fc.constant(2 ** 53),
        ),
      }),
    );
    const arbitrary = fc.uint8Array({ maxLength: 64 }).map((b) => ({ bytes: Buffer.from(b) }));
    const mutated = fc
      .tuple(tensorSpecs, fc.array(mutation, { minLength: 1, maxLength: 3 }))
      .map(([specs, mutations]) => {
        const valid = safetensorsBytes(specs).bytes;
        const dataSection = valid.subarray(8 + Number(valid.readBigUInt64LE(0)));
        let bytes = Buffer.from(valid);
        for (const m of mutations) {
          if (m.kind === 'flip' && bytes.length) bytes[m.at % bytes.length] = m.byte;
          else if (m.kind === 'cut') bytes = bytes.subarray(0, m.at % (bytes.length + 1));
          else if (m.kind === 'append') bytes = Buffer.concat([bytes, Buffer.from(m.extra)]);
          else if (m.kind === 'length' && bytes.length >= 8) bytes.writeBigUInt64LE(m.value, 0);
          else if (m.kind === 'lie' && specs.length) {
            // a header with one field of one tensor changed, before the valid file's data section
            const { header } = safetensorsBytes(specs);
            const entry = header[specs[m.key % specs.length].name] as {
              dtype: unknown;
              shape: unknown[];
              data_offsets: number[];
            };
            if (m.field === 'begin') entry.data_offsets[0] = m.value;
            else if (m.field === 'end') entry.data_offsets[1] = m.value;
            // the same size elsewhere: onto a neighbour, or past the end
            else if (m.field === 'shift') entry.data_offsets = entry.data_offsets.map((o) => o + m.value);
            else if (m.field === 'shape') entry.shape = [m.value];
            else entry.dtype = DTYPES[Math.abs(Math.trunc(m.value)) % DTYPES.length];
            const json = Buffer.from(JSON.stringify(header));
            const len = Buffer.alloc(8);
            len.writeBigUInt64LE(BigInt(json.length));
            bytes = Buffer.concat([len, json, dataSection]);
          }
        }
        return { bytes };
      });
    await fc.assert(
      fc.asyncProperty(fc.oneof(arbitrary, mutated), async ({ bytes }) => {
        await checkedHeader(fileWith(bytes, 'safetensors'), bytes.length);
      }),
      { numRuns: 600 },
    );
  });

  it('round-trips through the writer: same tensors, same bytes', async () => {
    await fc.assert(
      fc.asyncProperty(tensorSpecs, async (specs) => {
        const { bytes } = safetensorsBytes(specs);
        const source = fileWith(bytes, 'safetensors');
        const locations = tensorLocations((await checkedHeader(source, bytes.length))!);
        const out = path.join(work, `w${counter++}.safetensors`);
        await writeSafetensors(
          out,
          locations.map((source) => ({ name: `copy.${source.name}`, source })),
        );
        const written = (await checkedHeader(out, statSync(out).size))!;
        const outBytes = readFileSync(out);
        for (const loc of locations) {
          const copy = tensorLocations(written).find((t) => t.name === `copy.${loc.name}`)!;
          expect({ dtype: copy.dtype, shape: copy.shape }).toEqual({ dtype: loc.dtype, shape: loc.shape });
          expect(
            outBytes
              .subarray(copy.start, copy.start + copy.byteLength)
              .equals(bytes.subarray(loc.start, loc.start + loc.byteLength)),
          ).toBe(true);
        }
        expect(written.tensors.size).toBe(locations.length);
      }),
      { numRuns: 100 },
    );
  });
});
