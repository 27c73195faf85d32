/**
 * Line-oriented ASCII output straight into a reused Buffer: numbers are written without
 * building a string per line, which is what keeps 1M-line outputs under a second.
 */
import { promises as fsp } from 'node:fs';
import { withPath } from './fsFailures';

const BUFFER_BYTES = 1 << 20;
/** Longest line a caller may write between checks of `full`. */
const MAX_LINE_BYTES = 4096;

export class AsciiWriter {
  private readonly buf = Buffer.allocUnsafe(BUFFER_BYTES);
  private pos = 0;

  private constructor(
    private readonly handle: fsp.FileHandle,
    private readonly file: string,
  ) {}

  static async create(file: string): Promise<AsciiWriter> {
    return new AsciiWriter(await fsp.open(file, 'w'), file);
  }

  /** ASCII text (JSON keys, punctuation, number strings); a char loop beats Buffer#write for short strings. */
  text(s: string): this {
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < s.length; i++) buf[pos++] = s.charCodeAt(i);
    this.pos = pos;
    return this;
  }

  /** A non-negative safe integer, digit by digit (no string). */
  uint(n: number): this {
    if (n < 10) {
      this.buf[this.pos++] = 48 + n;
      return this;
    }
    let digits = 0;
    for (let v = n; v >= 1; v = Math.floor(v / 10)) digits++;
    let v = n;
    for (let i = this.pos + digits - 1; i >= this.pos; i--) {
      this.buf[i] = 48 + (v % 10);
      v = Math.floor(v / 10);
    }
    this.pos += digits;
    return this;
  }

  /** Any finite number in JavaScript's shortest round-trip form (valid JSON). */
  num(x: number): this {
    return this.text(String(x));
  }

  /** True when the buffer may not hold another line: the caller awaits flush() (one await per MiB, not per line). */
  get full(): boolean {
    return this.pos > BUFFER_BYTES - MAX_LINE_BYTES;
  }

  async flush(): Promise<void> {
    let done = 0;
    try {
      while (done < this.pos) done += (await this.handle.write(this.buf, done, this.pos - done)).bytesWritten;
    } catch (err) {
      throw withPath(err, this.file); // ENOSPC from a handle names no file
    }
    this.pos = 0;
  }

  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.handle.close();
    }
  }
}
