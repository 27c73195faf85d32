/**
 * The one way an activity opens a file that a user points it at (data file, entropy files, eval
 * sets, model dirs' JSON and weights): /dev/zero, a FIFO or a 1 TB sparse file must fail at once
 * with an InvalidInput naming the file, not stall a worker at full CPU. So:
 *
 *  - the file is opened with O_NONBLOCK (opening a FIFO without a writer would otherwise block the
 *    thread-pool thread for good) and fstat-ed on the open descriptor (no race with a rename):
 *    anything but a regular file is refused before one byte is read;
 *  - its size is checked against the limit of its kind before reading;
 *  - readers stop at the limits on line length and record count (jsonl.ts) and check activity
 *    cancellation once per read chunk (throwIfCancelled), so `wmss cancel` and a worker shutdown
 *    stop them within a heartbeat interval.
 *
 * The limits are in one place (inputLimits) and can be raised or lowered per worker through the
 * environment; the kernels (kernels/wmss_kernels/data.py) read the same variables, since they
 * inherit the worker's environment. docs/input-limits.md lists them.
 */
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  promises as fsp,
  readFileSync,
  statSync,
  type Stats,
} from 'node:fs';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../pipeline/errors';
import { invalidInput } from './failures';
import { throwIfCancelled } from './heartbeat';

export interface InputLimits {
  /** Longest line of a JSONL file (data, entropy, eval). */
  maxLineBytes: number;
  /** Largest JSONL file. */
  maxTextFileBytes: number;
  /** Largest JSON file read whole (config.json, tokenizer files, a `json` eval set, manifests of exports). */
  maxJsonFileBytes: number;
  /** Most records (non-blank lines) in one JSONL file. */
  maxRecords: number;
}

/**
 * Far above a paper-scale run: a GSM8K row is ~1 kB and a long chain-of-thought sample ~100 kB
 * (limit 1 MiB, 10×); GSM8K's train set is 4 MB and a million long samples ~100 GB would already
 * not fit a kernel's memory (the kernels hold every record), so 16 GiB; a 32k-vocab tokenizer.json
 * is ~10 MB (256 MiB); a million-row SFT set is 1e6 records (1e7).
 * A 50 MB line tokenized by the kernels cost 16 GB of memory: that is what the line limit stops.
 */
export const DEFAULT_INPUT_LIMITS: Readonly<InputLimits> = Object.freeze({
  maxLineBytes: 1 << 20,
  maxTextFileBytes: 16 * 2 ** 30,
  maxJsonFileBytes: 256 << 20,
  maxRecords: 10_000_000,
});

/** The environment variable of each limit (the kernels read the same names). */
export const INPUT_LIMIT_ENV: Readonly<Record<keyof InputLimits, string>> = Object.freeze({
  maxLineBytes: 'WMSS_MAX_LINE_BYTES',
  maxTextFileBytes: 'WMSS_MAX_TEXT_FILE_BYTES',
  maxJsonFileBytes: 'WMSS_MAX_JSON_FILE_BYTES',
  maxRecords: 'WMSS_MAX_RECORDS',
});

/**
 * The limits in force: the defaults, each overridden by its environment variable when that is a
 * positive integer. Read on every call, so a test can change them for one worker process.
 */
export function inputLimits(env: NodeJS.ProcessEnv = process.env): InputLimits {
  const out = { ...DEFAULT_INPUT_LIMITS };
  for (const key of Object.keys(INPUT_LIMIT_ENV) as (keyof InputLimits)[]) {
    const raw = env[INPUT_LIMIT_ENV[key]];
    if (raw === undefined || raw === '') continue;
    const n = Number(raw);
    // a mistyped limit must not silently become "no limit"; every retry would read the same environment
    if (!Number.isSafeInteger(n) || n <= 0) {
      throw ApplicationFailure.create({
        type: ErrorTypes.WorkerMisconfigured,
        nonRetryable: true,
        message: `${INPUT_LIMIT_ENV[key]}=${raw}: expected a positive integer (bytes or records) in this worker's environment`,
      });
    }
    out[key] = n;
  }
  return out;
}

/** What a non-regular file is, in the words of the error. */
function kindOf(stat: Stats): string {
  if (stat.isDirectory()) return 'a directory';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isBlockDevice()) return 'a block device';
  if (stat.isFIFO()) return 'a FIFO (named pipe)';
  if (stat.isSocket()) return 'a socket';
  return 'not a regular file';
}

export interface OpenInputOptions {
  /** The config key the path comes from, named in the error. */
  field?: string;
  /** Refuse a larger file (bytes); unset: any size (model weights, hashed chunk by chunk). */
  maxBytes?: number;
  /** Which limit maxBytes is, for the error ("WMSS_MAX_TEXT_FILE_BYTES"). */
  limitName?: string;
  /** What the file is, for the error ("data file"). */
  what?: string;
}

export interface OpenedInput {
  handle: fsp.FileHandle;
  stat: Stats;
}

/** The errors of refusing a file, shared with the kernels' wording (data.py). */
export function notRegularFile(file: string, stat: Stats, field?: string): Error {
  return invalidInput(
    file,
    undefined,
    field,
    `is ${kindOf(stat)}, not a regular file: refused before reading (an input must be a file of finite size)`,
  );
}

export function tooLarge(file: string, size: number, maxBytes: number, field?: string, limitName?: string): Error {
  return invalidInput(
    file,
    undefined,
    field,
    `is ${size} bytes, over the limit of ${maxBytes} bytes${limitName ? ` (${limitName})` : ''}`,
  );
}

/**
 * Open `file` for reading after checking, on the open descriptor, that it is a regular file within
 * `maxBytes`. A missing or unreadable file, or one refused, is InvalidInput naming it (and `field`).
 */
export async function openInput(file: string, opts: OpenInputOptions = {}): Promise<OpenedInput> {
  const cannotRead = (err: unknown) =>
    invalidInput(
      file,
      undefined,
      opts.field,
      `cannot read${opts.what ? ` ${opts.what}` : ''}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  // stat first: a device is not even opened (opening one can have effects); fstat below closes the race
  const before = await fsp.stat(file).catch((err: unknown) => {
    throw cannotRead(err);
  });
  if (!before.isFile()) throw notRegularFile(file, before, opts.field);
  let handle: fsp.FileHandle;
  try {
    // O_NONBLOCK: a FIFO swapped in after the stat opens at once instead of waiting for a writer
    handle = await fsp.open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw cannotRead(err);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw notRegularFile(file, stat, opts.field);
    if (opts.maxBytes !== undefined && stat.size > opts.maxBytes)
      throw tooLarge(file, stat.size, opts.maxBytes, opts.field, opts.limitName);
    return { handle, stat };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/**
 * Refuse `file` unless it is a regular file (following symlinks) within `maxBytes`, without
 * reading it: for inputs that another process (a kernel) reads.
 */
export async function checkInputFile(file: string, opts: OpenInputOptions = {}): Promise<Stats> {
  const { handle, stat } = await openInput(file, opts);
  await handle.close();
  return stat;
}

/**
 * The chunks of an opened input from `start`, at most `stat.size` bytes in all (a file that grows
 * while it is read is read as it was when opened), checking cancellation before each chunk.
 */
export async function* readChunks(opened: OpenedInput, chunkBytes: number, start = 0): AsyncGenerator<Buffer> {
  const { handle, stat } = opened;
  let position = start;
  while (position < stat.size) {
    throwIfCancelled();
    const buf = Buffer.allocUnsafe(Math.min(chunkBytes, stat.size - position));
    const { bytesRead } = await handle.read(buf, 0, buf.length, position);
    if (bytesRead === 0) return; // truncated while read
    position += bytesRead;
    yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
  }
}

/** The whole of a small input (JSON read in one piece): at most `maxBytes` (default the JSON limit). */
export async function readInputBytes(file: string, opts: OpenInputOptions = {}): Promise<Buffer> {
  const maxBytes = opts.maxBytes ?? inputLimits().maxJsonFileBytes;
  const opened = await openInput(file, {
    ...opts,
    maxBytes,
    limitName: opts.limitName ?? (opts.maxBytes === undefined ? INPUT_LIMIT_ENV.maxJsonFileBytes : undefined),
  });
  try {
    const parts: Buffer[] = [];
    for await (const chunk of readChunks(opened, 4 << 20)) parts.push(chunk);
    return Buffer.concat(parts);
  } finally {
    await opened.handle.close();
  }
}

/** readInputBytes as UTF-8 text (invalid bytes become U+FFFD, as readFile(…, 'utf8') did). */
export async function readInputText(file: string, opts: OpenInputOptions = {}): Promise<string> {
  return (await readInputBytes(file, opts)).toString('utf8');
}

/** readInputText for the synchronous readers (the ONNX tokenizer and manifest): the same checks. */
export function readInputTextSync(file: string, opts: OpenInputOptions = {}): string {
  const maxBytes = opts.maxBytes ?? inputLimits().maxJsonFileBytes;
  let fd: number;
  try {
    const before = statSync(file);
    if (!before.isFile()) throw notRegularFile(file, before, opts.field);
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    throw invalidInput(
      file,
      undefined,
      opts.field,
      `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw notRegularFile(file, stat, opts.field);
    if (stat.size > maxBytes)
      throw tooLarge(
        file,
        stat.size,
        maxBytes,
        opts.field,
        opts.limitName ?? (opts.maxBytes === undefined ? INPUT_LIMIT_ENV.maxJsonFileBytes : undefined),
      );
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}
