/**
 * Streaming JSONL reader with bounded memory: one read chunk plus at most one partial line
 * (capped by `maxLineBytes`) are held at a time. Blank lines are skipped but counted, so `line`
 * is the 1-based line number an editor shows. Errors (bad JSON, invalid UTF-8, over-long line)
 * are InvalidInput failures naming file and line.
 */
import { createReadStream } from 'node:fs';
import { invalidInput } from './failures';

export interface JsonlRecord {
  /** 1-based line number in the file. */
  line: number;
  value: unknown;
}

export interface JsonlOptions {
  /** A longer line is an error (default 64 MiB: a long reasoning trace is ~100 kB). */
  maxLineBytes?: number;
  /** Read chunk size (default 1 MiB). */
  chunkBytes?: number;
}

const NEWLINE = 0x0a;
const BLANK = Symbol('blank line');

/** The complete lines of one read chunk: their texts and the 1-based number of the first. */
interface LineBlock {
  firstLine: number;
  texts: string[];
}

async function* lineBlocks(file: string, maxLineBytes: number, chunkBytes: number): AsyncGenerator<LineBlock> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let nextLine = 1;
  let pending: Buffer[] = [];
  let pendingBytes = 0;

  // One decode per block (fast); on a decoding error, line by line to name the line.
  const decode = (bytes: Buffer, firstLine: number): string[] => {
    try {
      return decoder.decode(bytes).split('\n');
    } catch {
      let start = 0;
      for (let line = firstLine; ; line++) {
        const end = bytes.indexOf(NEWLINE, start);
        try {
          decoder.decode(bytes.subarray(start, end < 0 ? bytes.length : end));
        } catch {
          throw invalidInput(file, line, undefined, 'invalid UTF-8');
        }
        if (end < 0) throw invalidInput(file, line, undefined, 'invalid UTF-8');
        start = end + 1;
      }
    }
  };
  const tooLong = () => invalidInput(file, nextLine, undefined, `line longer than ${maxLineBytes} bytes`);

  for await (const raw of createReadStream(file, { highWaterMark: chunkBytes })) {
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
    const texts = decode(complete, nextLine);
    yield { firstLine: nextLine, texts };
    nextLine += texts.length;
    const rest = chunk.subarray(lastNewline + 1);
    pending = rest.length ? [rest] : [];
    pendingBytes = rest.length;
  }
  if (pendingBytes > 0) yield { firstLine: nextLine, texts: decode(Buffer.concat(pending), nextLine) };
}

function parseLine(file: string, text: string, line: number, maxLineBytes: number): unknown {
  if (text.length > maxLineBytes / 3 && Buffer.byteLength(text) > maxLineBytes) throw invalidInput(file, line, undefined, `line longer than ${maxLineBytes} bytes`);
  const first = text.charCodeAt(0);
  // the common case '{' skips the whitespace test
  if (first !== 123 && text.trim() === '') return BLANK;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalidInput(file, line, undefined, `invalid JSON: ${(err as Error).message}`);
  }
}

const defaults = (opts: JsonlOptions) => ({ maxLineBytes: opts.maxLineBytes ?? 64 << 20, chunkBytes: opts.chunkBytes ?? 1 << 20 });

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
