/**
 * The bounded input reader (activities/store/inputFiles.ts) and what is built on it: the digest,
 * the JSONL reader and the line count. Endless or huge inputs are refused before reading or stop at
 * a limit, and a cancelled activity stops them between chunks.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { readRunLock } from '../../activities/runLock';
import { DigestMemo, digestPath, listFiles, sha256File } from '../../activities/store/digest';
import { manifestFile, readManifest } from '../../activities/store/manifest';
import { countLines } from '../../activities/store/diskSpace';
import {
  DEFAULT_INPUT_LIMITS,
  INPUT_LIMIT_ENV,
  checkInputFile,
  inputLimits,
  readInputBytes,
  readInputTextSync,
} from '../../activities/store/inputFiles';
import { forEachJsonl, readJsonl } from '../../activities/store/jsonl';
import { cleanupTmp, failureOf, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);

const collect = async (file: string, opts = {}) => {
  const out: number[] = [];
  for await (const r of readJsonl(file, opts)) out.push(r.line);
  return out;
};

/** A run of `bytes` zeros that takes no disk. */
function sparse(dir: string, bytes: number): string {
  const file = path.join(dir, `sparse-${bytes}`);
  writeFileSync(file, '');
  truncateSync(file, bytes);
  return file;
}

describe('refused before reading, naming the file', () => {
  const dir = tmpDir('wmss-input-');
  const fifo = path.join(dir, 'pipe');
  execFileSync('mkfifo', [fifo]);
  const linkToZero = path.join(dir, 'zero.jsonl');
  symlinkSync('/dev/zero', linkToZero);

  test.each([
    ['a FIFO (opening it does not wait for a writer)', fifo, 'a FIFO (named pipe)'],
    ['/dev/zero', '/dev/zero', 'a character device'],
    ['a symlink to /dev/zero', linkToZero, 'a character device'],
    ['a directory', dir, 'a directory'],
  ])(
    '%s',
    async (_what, file, kind) => {
      const expected = `${file}: is ${kind}, not a regular file: refused before reading`;
      for (const attempt of [
        checkInputFile(file),
        collect(file),
        countLines(file),
        sha256File(file),
        readInputBytes(file),
      ]) {
        const f = await failureOf(attempt);
        expect({ type: f.type, nonRetryable: f.nonRetryable }).toEqual({ type: 'InvalidInput', nonRetryable: true });
        expect(f.message).toContain(expected);
        expect(f.details[0]).toEqual({ file, line: null, field: null });
      }
      expect(() => readInputTextSync(file)).toThrow(expected);
      // the digest names the config key too (a directory is a model dir to it)
      if (kind !== 'a directory')
        expect((await failureOf(digestPath(dir, file, 'dataFile'))).message).toContain(
          `${file} (dataFile): is ${kind}`,
        );
    },
    20_000,
  );

  it('a file over its size limit: before one byte is read or hashed', async () => {
    const huge = sparse(dir, DEFAULT_INPUT_LIMITS.maxTextFileBytes + 1);
    const message = `is ${DEFAULT_INPUT_LIMITS.maxTextFileBytes + 1} bytes, over the limit of ${DEFAULT_INPUT_LIMITS.maxTextFileBytes} bytes (WMSS_MAX_TEXT_FILE_BYTES)`;
    const started = Date.now();
    for (const attempt of [collect(huge), countLines(huge)])
      expect((await failureOf(attempt)).message).toContain(`${huge}: ${message}`);
    const { digestTextInput } = await import('../../activities/store/digest');
    expect((await failureOf(digestTextInput(dir, huge, 'dataFile'))).message).toContain(
      `${huge} (dataFile): ${message}`,
    );
    // JSON read whole has the smaller limit
    const json = sparse(dir, DEFAULT_INPUT_LIMITS.maxJsonFileBytes + 1);
    expect((await failureOf(readInputBytes(json))).message).toContain('(WMSS_MAX_JSON_FILE_BYTES)');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a FIFO planted in a run dir as a manifest, lock or digest memo reads as unreadable, without waiting for a writer', async () => {
    const runDir = tmpDir('wmss-planted-');
    mkdirSync(path.dirname(manifestFile(runDir, 'merge')), { recursive: true });
    execFileSync('mkfifo', [manifestFile(runDir, 'merge')]);
    mkdirSync(path.join(runDir, '.wmss', 'lock'), { recursive: true });
    execFileSync('mkfifo', [path.join(runDir, '.wmss', 'lock', '000000000001.json')]);
    execFileSync('mkfifo', [DigestMemo.memoFile(runDir)]);
    expect(await readManifest(runDir, 'merge')).toBeUndefined();
    expect(await readRunLock(runDir)).toBeUndefined();
    expect((await DigestMemo.open(runDir)).lookup('/x', { size: 0, mtimeMs: 0 } as never)).toBeUndefined();
  });

  it('a symlink loop in a model dir', async () => {
    const model = path.join(dir, 'model');
    mkdirSync(path.join(model, 'sub'), { recursive: true });
    writeFileSync(path.join(model, 'config.json'), '{}');
    symlinkSync('..', path.join(model, 'sub', 'up'));
    expect((await failureOf(listFiles(model))).message).toMatch(/sub\/up: a symlink loop/);
  });
});

describe('limits', () => {
  const dir = tmpDir('wmss-limits-');
  const row = '{"a":1}';

  it('defaults a paper-scale run never reaches, one place to change them, and no silent "unlimited"', () => {
    expect(inputLimits({})).toEqual({
      maxLineBytes: 1 << 20,
      maxTextFileBytes: 16 * 2 ** 30,
      maxJsonFileBytes: 256 << 20,
      maxRecords: 10_000_000,
    });
    expect(inputLimits({ WMSS_MAX_LINE_BYTES: '4096', WMSS_MAX_RECORDS: '' })).toMatchObject({
      maxLineBytes: 4096,
      maxRecords: 10_000_000,
    });
    for (const bad of ['0', '-1', 'lots', '1e400', '1.5'])
      expect(() => inputLimits({ WMSS_MAX_RECORDS: bad })).toThrow(/WMSS_MAX_RECORDS=.*positive integer/);
    expect(Object.values(INPUT_LIMIT_ENV).sort()).toEqual([
      'WMSS_MAX_JSON_FILE_BYTES',
      'WMSS_MAX_LINE_BYTES',
      'WMSS_MAX_RECORDS',
      'WMSS_MAX_TEXT_FILE_BYTES',
    ]);
  });

  it('the record limit names the first line over it; blank lines do not count', async () => {
    const file = path.join(dir, 'rows.jsonl');
    writeFileSync(file, `${row}\n\n${row}\n${row}\n`);
    expect(await collect(file, { maxRecords: 3 })).toEqual([1, 3, 4]);
    const f = await failureOf(collect(file, { maxRecords: 2 }));
    expect(f.message).toContain(`${file}:4: more than 2 records (WMSS_MAX_RECORDS)`);
    expect((await failureOf(forEachJsonl(file, () => undefined, { maxRecords: 2 }))).message).toContain(
      ':4: more than 2 records',
    );
  });

  it("the environment moves the limits of every reader (the worker's, passed on to its kernels)", async () => {
    const file = path.join(dir, 'env.jsonl');
    writeFileSync(file, `${row}\n${row}x${row}\n`);
    process.env.WMSS_MAX_LINE_BYTES = String(row.length);
    try {
      expect((await failureOf(collect(file))).message).toContain(
        `${file}:2: line longer than ${row.length} bytes (WMSS_MAX_LINE_BYTES)`,
      );
    } finally {
      delete process.env.WMSS_MAX_LINE_BYTES;
    }
    process.env.WMSS_MAX_TEXT_FILE_BYTES = '10';
    try {
      expect((await failureOf(countLines(file))).message).toMatch(
        /over the limit of 10 bytes \(WMSS_MAX_TEXT_FILE_BYTES\)/,
      );
    } finally {
      delete process.env.WMSS_MAX_TEXT_FILE_BYTES;
    }
  });

  it('a file that grows while read is read as it was when opened (an endless writer cannot keep a reader going)', async () => {
    const file = path.join(dir, 'grows.jsonl');
    writeFileSync(file, `${row}\n`);
    const lines: number[] = [];
    await forEachJsonl(
      file,
      (_v, line) => {
        lines.push(line);
        writeFileSync(file, `${row}\n`, { flag: 'a' });
      },
      { chunkBytes: 4 },
    );
    expect(lines).toEqual([1]);
  });
});

describe('cancellation', () => {
  it('stops hashing, reading and counting a huge file at the next chunk', async () => {
    const dir = tmpDir('wmss-cancel-');
    const huge = sparse(dir, 2 ** 40);
    process.env.WMSS_MAX_TEXT_FILE_BYTES = String(2 ** 41);
    const started = Date.now();
    const envs = [new MockActivityEnvironment(), new MockActivityEnvironment(), new MockActivityEnvironment()];
    const runs = [
      envs[0].run(() => sha256File(huge)),
      envs[1].run(() => countLines(huge)),
      envs[2].run(() => forEachJsonl(huge, () => undefined, { maxLineBytes: 2 ** 41, maxFileBytes: 2 ** 41 })),
    ];
    setTimeout(() => envs.forEach((e) => e.cancel()), 300);
    try {
      const settled = await Promise.allSettled(runs);
      for (const r of settled) expect(r.status === 'rejected' && r.reason instanceof CancelledFailure).toBe(true);
    } finally {
      delete process.env.WMSS_MAX_TEXT_FILE_BYTES;
    }
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
