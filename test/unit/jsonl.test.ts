import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { forEachJsonl, readJsonl } from '../../activities/store/jsonl';
import { ErrorTypes } from '../../pipeline/errors';
import { cleanupTmp, failureOf, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

async function collect(file: string, opts = {}) {
  const out: { line: number; value: unknown }[] = [];
  for await (const r of readJsonl(file, opts)) out.push(r);
  return out;
}

describe('readJsonl', () => {
  it('skips blank lines but counts them, across tiny read chunks, with CRLF and no final newline', async () => {
    const file = path.join(tmpDir(), 'a.jsonl');
    writeFileSync(file, '{"a":1}\n\n  \r\n{"b":"é€"}\r\n{"c":[1,2,3]}');
    for (const chunkBytes of [1, 3, 7, 1 << 20]) {
      expect(await collect(file, { chunkBytes })).toEqual([
        { line: 1, value: { a: 1 } },
        { line: 4, value: { b: 'é€' } },
        { line: 5, value: { c: [1, 2, 3] } },
      ]);
    }
    const seen: number[] = [];
    await forEachJsonl(file, (_v, line) => seen.push(line), { chunkBytes: 2 });
    expect(seen).toEqual([1, 4, 5]);
  });

  it('names file and line of bad JSON', async () => {
    const file = path.join(tmpDir(), 'b.jsonl');
    writeFileSync(file, '{"a":1}\n{"a":\n');
    const f = await failureOf(collect(file));
    expect(f).toMatchObject({
      type: ErrorTypes.InvalidInput,
      nonRetryable: true,
      details: [{ file, line: 2, field: null }],
    });
    expect(f.message).toMatch(/b\.jsonl:2: invalid JSON/);
  });

  it('names the line of invalid UTF-8', async () => {
    const file = path.join(tmpDir(), 'c.jsonl');
    writeFileSync(
      file,
      Buffer.concat([Buffer.from('{"a":1}\n{"a":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n{"a":2}\n')]),
    );
    const f = await failureOf(collect(file));
    expect(f.message).toMatch(/c\.jsonl:2: invalid UTF-8/);
  });

  it('refuses a line over the limit, also when it spans read chunks', async () => {
    const file = path.join(tmpDir(), 'd.jsonl');
    writeFileSync(file, `{"a":1}\n{"s":"${'x'.repeat(100)}"}\n`);
    expect((await failureOf(collect(file, { maxLineBytes: 50 }))).message).toMatch(
      /d\.jsonl:2: line longer than 50 bytes/,
    );
    expect((await failureOf(collect(file, { maxLineBytes: 50, chunkBytes: 8 }))).message).toMatch(
      /d\.jsonl:2: line longer than 50 bytes/,
    );
    expect(await collect(file, { maxLineBytes: 200, chunkBytes: 8 })).toHaveLength(2);
  });

  it('skips a byte-order mark that starts the file, in any chunk size; one further on is bad JSON of its line', async () => {
    const file = path.join(tmpDir(), 'e.jsonl');
    writeFileSync(file, '\uFEFF{"a":1}\n{"b":2}\n');
    for (const chunkBytes of [1, 2, 4, 1 << 20])
      expect(await collect(file, { chunkBytes })).toEqual([
        { line: 1, value: { a: 1 } },
        { line: 2, value: { b: 2 } },
      ]);
    writeFileSync(file, '{"a":1}\n\uFEFF{"b":2}\n');
    for (const chunkBytes of [1, 9, 1 << 20])
      expect((await failureOf(collect(file, { chunkBytes }))).message).toMatch(
        /e\.jsonl:2: invalid JSON: .*byte-order mark/,
      );
  });

  it('names the first bad line of the file, whatever is wrong further on in the same read chunk', async () => {
    const file = path.join(tmpDir(), 'f.jsonl');
    writeFileSync(
      file,
      Buffer.concat([Buffer.from('{"a":1}\n{"a":\n{"b":"'), Buffer.from([0xff]), Buffer.from('"}\n')]),
    );
    expect((await failureOf(collect(file))).message).toMatch(/f\.jsonl:2: invalid JSON/);
  });

  it('a missing file or a directory is InvalidInput naming it', async () => {
    const dir = tmpDir();
    const missing = await failureOf(collect(path.join(dir, 'nope.jsonl')));
    expect(missing).toMatchObject({
      type: ErrorTypes.InvalidInput,
      nonRetryable: true,
      details: [{ file: path.join(dir, 'nope.jsonl'), line: null, field: null }],
    });
    expect(missing.message).toMatch(/nope\.jsonl: cannot read: ENOENT/);
    expect((await failureOf(collect(dir))).message).toMatch(/is a directory/);
  });
});
