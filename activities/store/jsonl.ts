/**
 * Streaming JSONL reader with bounded memory: one read chunk plus at most one partial line
 * (capped by `maxLineBytes`) are held at a time. Blank lines are skipped but counted, so `line`
 * is the 1-based line number an editor shows. Errors (bad JSON, invalid UTF-8, over-long line)
 * are InvalidInput failures naming file and line.
 */
import type { ApplicationFailure } from '@temporalio/common';
import { invalidInput } from './failures';
import { DEFAULT_INPUT_LIMITS, INPUT_LIMIT_ENV, inputLimits, openInput, readChunks } from './inputFiles';

/**
 * The default limit on the length of a JSONL line, for every reader of data, entropy and eval
 * files (the kernels' data.py has the same default; both read WMSS_MAX_LINE_BYTES): inputFiles.ts.
 */
export const MAX_LINE_BYTES = DEFAULT_INPUT_LIMITS.maxLineBytes;

export interface JsonlRecord {
  /** 1-based line number in the file. */
  line: number;
  value: unknown;
}

export interface JsonlOptions {
  /** A longer line is an error (default inputLimits().maxLineBytes, 1 MiB). */
  maxLineBytes?: number;
  /** A larger file is refused before reading (default inputLimits().maxTextFileBytes). */
  maxFileBytes?: number;
  /** More records (non-blank lines) are an error (default inputLimits().maxRecords). */
  maxRecords?: number;
  /** The config key the file comes from, named in the errors about the file as a whole. */
  field?: string;
  /** Read chunk size (default 1 MiB). */
  chunkBytes?: number;
}

const NEWLINE = 0x0a;
const BLANK = Symbol('blank line');
const BOM = '\uFEFF';
/** A blank line holds only JSON whitespace other than the newline; data.py skips the same lines. */
const BLANK_LINE = /^[ \t\r]*$/;

/** Why bytes that are not UTF-8 fail, with a hint for the usual culprit (a UTF-16 export). */
function utf8Problem(bytes: Buffer, line: number): string {
  if (
    line === 1 &&
    bytes.length >= 2 &&
    ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff))
  ) {
    return 'invalid UTF-8: the file starts with a UTF-16 byte-order mark; convert it to UTF-8';
  }
  return 'invalid UTF-8';
}

/**
 * Opens `file` for reading (a regular file within the size limit: inputFiles.ts); `start` skips
 * a UTF-8 byte-order mark at the start of the file: it is not part of line 1.
 */
async function openForReading(file: string, maxFileBytes: number, field?: string) {
  const opened = await openInput(file, { maxBytes: maxFileBytes, limitName: INPUT_LIMIT_ENV.maxTextFileBytes, field });
  const head = Buffer.alloc(3);
  const { bytesRead } = await opened.handle.read(head, 0, 3, 0);
  return { opened, start: bytesRead === 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0 };
}

/** The complete lines of one read chunk: their texts and the 1-based number of the first. */
interface LineBlock {
  firstLine: number;
  texts: string[];
}

/** Decoded lines of a block; with `error`, the lines before the first one that failed. */
interface Decoded {
  texts: string[];
  error?: ApplicationFailure;
}

async function* lineBlocks(file: string, limits: Limits): AsyncGenerator<LineBlock> {
  const { maxLineBytes, chunkBytes } = limits;
  // ignoreBOM keeps a U+FEFF where it is (TextDecoder would drop one at the start of every
  // decode() call, i.e. of every block); the one that starts the file is skipped when opening it.
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let nextLine = 1;
  let pending: Buffer[] = [];
  let pendingBytes = 0;

  // One decode per block (fast). On a decoding error, line by line: the lines before the bad one
  // are still parsed first, so the error named is always the first bad line of the file, however
  // the file falls into read chunks (the length limit is checked before the encoding, as in parseLine).
  const decode = (bytes: Buffer, firstLine: number): Decoded => {
    try {
      return { texts: decoder.decode(bytes).split('\n') };
    } catch {
      const texts: string[] = [];
      let start = 0;
      for (let line = firstLine; ; line++) {
        const end = bytes.indexOf(NEWLINE, start);
        const lineBytes = bytes.subarray(start, end < 0 ? bytes.length : end);
        if (lineBytes.length > maxLineBytes)
          return {
            texts,
            error: invalidInput(
              file,
              line,
              undefined,
              `line longer than ${maxLineBytes} bytes (${INPUT_LIMIT_ENV.maxLineBytes})`,
            ),
          };
        try {
          texts.push(decoder.decode(lineBytes));
        } catch {
          return { texts, error: invalidInput(file, line, undefined, utf8Problem(lineBytes, line)) };
        }
        if (end < 0) return { texts, error: invalidInput(file, line, undefined, 'invalid UTF-8') };
        start = end + 1;
      }
    }
  };
  const tooLong = () =>
    invalidInput(file, nextLine, undefined, `line longer than ${maxLineBytes} bytes (${INPUT_LIMIT_ENV.maxLineBytes})`);

  const { opened, start } = await openForReading(file, limits.maxFileBytes, limits.field);
  try {
    for await (const chunk of readChunks(opened, chunkBytes, start)) {
      const lastNewline = chunk.lastIndexOf(NEWLINE);
      if (lastNewline < 0) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes > maxLineBytes) throw tooLong();
        continue;
      }
      if (pendingBytes + chunk.indexOf(NEWLINE) > maxLineBytes) throw tooLong();
      const complete = pending.length
        ? Buffer.concat([...pending, chunk.subarray(0, lastNewline)])
        : chunk.subarray(0, lastNewline);
      const { texts, error } = decode(complete, nextLine);
      yield { firstLine: nextLine, texts };
      if (error) throw error;
      nextLine += texts.length;
      const rest = chunk.subarray(lastNewline + 1);
      pending = rest.length ? [rest] : [];
      pendingBytes = rest.length;
    }
    if (pendingBytes > 0) {
      const { texts, error } = decode(Buffer.concat(pending), nextLine);
      yield { firstLine: nextLine, texts };
      if (error) throw error;
    }
  } finally {
    await opened.handle.close();
  }
}

function parseLine(file: string, text: string, line: number, maxLineBytes: number): unknown {
  if (text.length > maxLineBytes / 3 && Buffer.byteLength(text) > maxLineBytes)
    throw invalidInput(
      file,
      line,
      undefined,
      `line longer than ${maxLineBytes} bytes (${INPUT_LIMIT_ENV.maxLineBytes})`,
    );
  // the common case '{' skips the whitespace test
  if (text.charCodeAt(0) !== 123 && BLANK_LINE.test(text)) return BLANK;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalidInput(file, line, undefined, `invalid JSON: ${(err as Error).message}${jsonHint(text)}`);
  }
}

/** What usually makes a line that looks like JSON invalid. */
function jsonHint(text: string): string {
  if (/(^|[^A-Za-z"])(NaN|-?Infinity)([^A-Za-z"]|$)/.test(text)) return ' (NaN and Infinity are not JSON numbers)';
  if (text.includes('\0')) return ' (NUL characters: is the file UTF-16?)';
  if (text.startsWith(BOM)) return ' (a byte-order mark in the middle of the file: were files concatenated?)';
  return '';
}

interface Limits {
  maxLineBytes: number;
  maxFileBytes: number;
  maxRecords: number;
  chunkBytes: number;
  field?: string;
}

function limitsOf(opts: JsonlOptions): Limits {
  const env = inputLimits();
  return {
    maxLineBytes: opts.maxLineBytes ?? env.maxLineBytes,
    maxFileBytes: opts.maxFileBytes ?? env.maxTextFileBytes,
    maxRecords: opts.maxRecords ?? env.maxRecords,
    chunkBytes: opts.chunkBytes ?? 1 << 20,
    field: opts.field,
  };
}

const tooManyRecords = (file: string, line: number, max: number) =>
  invalidInput(file, line, undefined, `more than ${max} records (${INPUT_LIMIT_ENV.maxRecords})`);

/** Records one at a time. */
export async function* readJsonl(file: string, opts: JsonlOptions = {}): AsyncGenerator<JsonlRecord> {
  const limits = limitsOf(opts);
  let records = 0;
  for await (const block of lineBlocks(file, limits)) {
    for (let k = 0; k < block.texts.length; k++) {
      const value = parseLine(file, block.texts[k], block.firstLine + k, limits.maxLineBytes);
      if (value === BLANK) continue;
      if (++records > limits.maxRecords) throw tooManyRecords(file, block.firstLine + k, limits.maxRecords);
      yield { line: block.firstLine + k, value };
    }
  }
}

/**
 * Calls `visit(value, line)` for every record: the fast form for million-row files (one await
 * per read chunk, no object per record).
 */
export async function forEachJsonl(
  file: string,
  visit: (value: unknown, line: number) => void,
  opts: JsonlOptions = {},
): Promise<void> {
  const limits = limitsOf(opts);
  let records = 0;
  for await (const block of lineBlocks(file, limits)) {
    for (let k = 0; k < block.texts.length; k++) {
      const value = parseLine(file, block.texts[k], block.firstLine + k, limits.maxLineBytes);
      if (value === BLANK) continue;
      if (++records > limits.maxRecords) throw tooManyRecords(file, block.firstLine + k, limits.maxRecords);
      visit(value, block.firstLine + k);
    }
  }
}
