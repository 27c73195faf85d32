/**
 * Streaming JSONL reader with bounded memory: one read chunk plus at most one partial line
 * (capped by `maxLineBytes`) are held at a time. Blank lines are skipped but counted, so `line`
 * is the 1-based line number an editor shows. Errors (bad JSON, invalid UTF-8, over-long line)
 * are InvalidInput failures naming file and line.
 */
import { promises as fsp } from 'node:fs';
import type { ApplicationFailure } from '@temporalio/common';
import { invalidInput } from './failures';

/**
 * The one limit on the length of a JSONL line, for every reader of data, entropy and eval files
 * (the kernels' data.py applies the same). A long reasoning trace is ~100 kB.
 */
export const MAX_LINE_BYTES = 64 << 20;

export interface JsonlRecord {
  /** 1-based line number in the file. */
  line: number;
  value: unknown;
}

export interface JsonlOptions {
  /** A longer line is an error (default MAX_LINE_BYTES, 64 MiB). */
  maxLineBytes?: number;
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
  if (line === 1 && bytes.length >= 2 && ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff))) {
    return 'invalid UTF-8: the file starts with a UTF-16 byte-order mark; convert it to UTF-8';
  }
  return 'invalid UTF-8';
}

/**
 * Opens `file` for reading; a missing or unreadable file is InvalidInput naming it. `start` skips
 * a UTF-8 byte-order mark at the start of the file: it is not part of line 1.
 */
async function openForReading(file: string): Promise<{ handle: fsp.FileHandle; start: number }> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, 'r');
  } catch (err) {
    throw invalidInput(file, undefined, undefined, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const stat = await handle.stat().catch(() => undefined);
  if (!stat?.isFile()) {
    await handle.close();
    throw invalidInput(file, undefined, undefined, stat?.isDirectory() ? 'is a directory, not a JSONL file' : 'is not a regular file');
  }
  const head = Buffer.alloc(3);
  const { bytesRead } = await handle.read(head, 0, 3, 0);
  return { handle, start: bytesRead === 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0 };
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

async function* lineBlocks(file: string, maxLineBytes: number, chunkBytes: number): AsyncGenerator<LineBlock> {
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
        if (lineBytes.length > maxLineBytes) return { texts, error: invalidInput(file, line, undefined, `line longer than ${maxLineBytes} bytes`) };
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
  const tooLong = () => invalidInput(file, nextLine, undefined, `line longer than ${maxLineBytes} bytes`);

  const { handle, start } = await openForReading(file);
  for await (const raw of handle.createReadStream({ start, highWaterMark: chunkBytes })) {
    const chunk = raw as Buffer;
    const lastNewline = chunk.lastIndexOf(NEWLINE);
    if (lastNewline < 0) {
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes > maxLineBytes) throw tooLong();
      continue;
    }
    if (pendingBytes + chunk.indexOf(NEWLINE) > maxLineBytes) throw tooLong();
    const complete = pending.length ? Buffer.concat([...pending, chunk.subarray(0, lastNewline)]) : chunk.subarray(0, lastNewline);
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
}

function parseLine(file: string, text: string, line: number, maxLineBytes: number): unknown {
  if (text.length > maxLineBytes / 3 && Buffer.byteLength(text) > maxLineBytes) throw invalidInput(file, line, undefined, `line longer than ${maxLineBytes} bytes`);
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

const defaults = (opts: JsonlOptions) => ({ maxLineBytes: opts.maxLineBytes ?? MAX_LINE_BYTES, chunkBytes: opts.chunkBytes ?? 1 << 20 });

/** Records one at a time. */
export async function* readJsonl(file: string, opts: JsonlOptions = {}): AsyncGenerator<JsonlRecord> {
  const { maxLineBytes, chunkBytes } = defaults(opts);
  for await (const block of lineBlocks(file, maxLineBytes, chunkBytes)) {
    for (let k = 0; k < block.texts.length; k++) {
      const value = parseLine(file, block.texts[k], block.firstLine + k, maxLineBytes);
      if (value !== BLANK) yield { line: block.firstLine + k, value };
    }
  }
}

/**
 * Calls `visit(value, line)` for every record: the fast form for million-row files (one await
 * per read chunk, no object per record).
 */
export async function forEachJsonl(file: string, visit: (value: unknown, line: number) => void, opts: JsonlOptions = {}): Promise<void> {
  const { maxLineBytes, chunkBytes } = defaults(opts);
  for await (const block of lineBlocks(file, maxLineBytes, chunkBytes)) {
    for (let k = 0; k < block.texts.length; k++) {
      const value = parseLine(file, block.texts[k], block.firstLine + k, maxLineBytes);
      if (value !== BLANK) visit(value, block.firstLine + k);
    }
  }
}
