/**
 * sha256 of files and directories, memoised per run dir in `.wmss/digests.json` so a 16 GB base
 * model is hashed once: an entry is reused while the file's absolute path, size and mtime match.
 */
import { createHash } from 'node:crypto';
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeFileDurable } from './durableFs';
import { invalidInput } from './failures';
import { activityHeartbeat, progressDetails } from './heartbeat';
import {
  INPUT_LIMIT_ENV,
  inputLimits,
  notRegularFile,
  openInput,
  readChunks,
  readInputText,
  tooLarge,
  type OpenInputOptions,
} from './inputFiles';

const READ_CHUNK = 4 << 20;

/** Called with the bytes hashed so far (for heartbeats during long hashes). */
export type OnBytes = (bytesSoFar: number) => void;

export interface DigestOptions {
  memo?: DigestMemo;
  onBytes?: OnBytes;
  /** A larger file is refused before hashing (InvalidInput naming it): the text limit for a data file. */
  limit?: Pick<OpenInputOptions, 'maxBytes' | 'limitName' | 'field'>;
}

export const FileDigest = z.object({ path: z.string(), size: z.number(), sha256: z.string() });
export type FileDigest = z.infer<typeof FileDigest>;

export interface DirDigest {
  sha256: string;
  size: number;
  /** Sorted by path ('/'-separated, relative to the directory). */
  files: FileDigest[];
}

/**
 * Stream a file through sha256; never holds more than one read chunk. Only a regular file is read
 * (/dev/zero would never end), only up to the size it had when opened, and an activity's
 * cancellation stops it between chunks.
 */
export async function sha256File(file: string, onBytes?: OnBytes, limit: DigestOptions['limit'] = {}): Promise<string> {
  const hash = createHash('sha256');
  let seen = 0;
  const opened = await openInput(file, limit);
  try {
    for await (const chunk of readChunks(opened, READ_CHUNK)) {
      hash.update(chunk);
      seen += chunk.length;
      onBytes?.(seen);
    }
  } finally {
    await opened.handle.close();
  }
  return hash.digest('hex');
}

const MemoEntry = z.object({ size: z.number(), mtimeMs: z.number(), sha256: z.string() });
const MemoFile = z.object({ version: z.literal(1), entries: z.record(z.string(), MemoEntry) });
type MemoEntry = z.infer<typeof MemoEntry>;

/** Serialises memo writes within this process; across processes the last writer wins (cost: a re-hash). */
const memoLocks = new Map<string, Promise<unknown>>();

export class DigestMemo {
  private readonly fresh = new Map<string, MemoEntry>();

  private constructor(
    readonly file: string,
    private readonly entries: Map<string, MemoEntry>,
  ) {}

  static memoFile(runDir: string): string {
    return path.join(runDir, '.wmss', 'digests.json');
  }

  /** Load the memo of a run dir; a missing or unreadable memo starts empty (it is only a cache). */
  static async open(runDir: string): Promise<DigestMemo> {
    const file = DigestMemo.memoFile(runDir);
    return new DigestMemo(file, await readMemoEntries(file));
  }

  lookup(absPath: string, stat: Stats): string | undefined {
    const entry = this.fresh.get(absPath) ?? this.entries.get(absPath);
    return entry && entry.size === stat.size && entry.mtimeMs === stat.mtimeMs ? entry.sha256 : undefined;
  }

  record(absPath: string, stat: Stats, sha256: string): void {
    this.fresh.set(absPath, { size: stat.size, mtimeMs: stat.mtimeMs, sha256 });
  }

  /** Merge this session's new entries into the file on disk. */
  async save(): Promise<void> {
    if (this.fresh.size === 0) return;
    const previous = memoLocks.get(this.file) ?? Promise.resolve();
    const next = previous
      .catch(() => undefined)
      .then(async () => {
        const merged = await readMemoEntries(this.file);
        for (const [key, entry] of this.fresh) merged.set(key, entry);
        const body: z.infer<typeof MemoFile> = { version: 1, entries: Object.fromEntries(merged) };
        await writeFileDurable(this.file, JSON.stringify(body));
        this.fresh.clear();
      });
    memoLocks.set(this.file, next);
    await next;
  }
}

async function readMemoEntries(file: string): Promise<Map<string, MemoEntry>> {
  try {
    const parsed = MemoFile.safeParse(JSON.parse(await readInputText(file)));
    return new Map(parsed.success ? Object.entries(parsed.data.entries) : []);
  } catch {
    return new Map();
  }
}

/** sha256 of one file, from the memo when its size and mtime are unchanged. */
export async function digestFile(file: string, opts: DigestOptions = {}): Promise<string> {
  const abs = path.resolve(file);
  const stat = await fsp.stat(abs);
  const max = opts.limit?.maxBytes;
  if (max !== undefined && stat.size > max)
    throw tooLarge(abs, stat.size, max, opts.limit?.field, opts.limit?.limitName);
  const known = opts.memo?.lookup(abs, stat);
  if (known) return known;
  const sha256 = await sha256File(abs, opts.onBytes, opts.limit);
  opts.memo?.record(abs, stat, sha256);
  return sha256;
}

/** Regular files under `dir`, '/'-relative and sorted; dotfiles and dot-directories are not content. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  // symlinks are followed (HF cache snapshots link every file), so a link to an ancestor would walk forever
  const onPath = new Set<string>();
  async function walk(rel: string, id: string): Promise<void> {
    onPath.add(id);
    for (const entry of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
      if (entry.name.startsWith('.')) continue;
      const childRel = rel ? `${rel}/${entry.name}` : entry.name;
      const stat = await fsp.stat(path.join(dir, childRel));
      if (stat.isDirectory()) {
        const childId = `${stat.dev}:${stat.ino}`;
        if (onPath.has(childId))
          throw invalidInput(
            path.join(dir, childRel),
            undefined,
            undefined,
            'a symlink loop: this directory contains itself',
          );
        await walk(childRel, childId);
      } else if (stat.isFile()) out.push(childRel);
    }
    onPath.delete(id);
  }
  const top = await fsp.stat(dir);
  await walk('', `${top.dev}:${top.ino}`);
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The digest of a directory: sha256 over its sorted `path<TAB>size<TAB>sha256` lines. */
export function combineDirDigest(files: FileDigest[]): string {
  const hash = createHash('sha256');
  for (const f of files) hash.update(`${f.path}\t${f.size}\t${f.sha256}\n`);
  return hash.digest('hex');
}

export async function digestDir(dir: string, opts: DigestOptions = {}): Promise<DirDigest> {
  const files: FileDigest[] = [];
  let before = 0;
  for (const rel of await listFiles(dir)) {
    const abs = path.join(dir, rel);
    const { size } = await fsp.stat(abs);
    const base = before;
    const sha256 = await digestFile(abs, {
      memo: opts.memo,
      onBytes: opts.onBytes && ((n) => opts.onBytes!(base + n)),
    });
    files.push({ path: rel, size, sha256 });
    before += size;
  }
  return { sha256: combineDirDigest(files), size: before, files };
}

/** Heartbeats at most every 5 s while hashing, so hashing a 16 GB model inside an activity does not trip its heartbeat timeout. */
function throttledActivityHeartbeat(phase: string): OnBytes {
  let last = 0;
  return (n) => {
    const now = Date.now();
    if (now - last < 5000) return;
    last = now;
    activityHeartbeat({ ...progressDetails(n, 0, 'bytes'), phase });
  };
}

/**
 * Digest of a file or directory as one hex string, memoised in `<runDir>/.wmss/digests.json`.
 * `target` may lie outside the run dir (the base model, the data file): one that does not exist
 * or cannot be read is InvalidInput naming it and `field`, the config key it comes from.
 */
export async function digestPath(
  runDir: string,
  target: string,
  field?: string,
  opts: { onBytes?: OnBytes; maxBytes?: number; limitName?: string } = {},
): Promise<string> {
  const abs = path.resolve(target);
  const onBytes = opts.onBytes ?? throttledActivityHeartbeat(`digest ${path.basename(target)}`);
  const stat = await fsp.stat(abs).catch((err: NodeJS.ErrnoException) => {
    throw invalidInput(
      abs,
      undefined,
      field,
      `${err.code === 'ENOENT' ? 'does not exist' : 'cannot be read'} (${err.code ?? err.message})`,
    );
  });
  if (!stat.isDirectory() && !stat.isFile()) throw notRegularFile(abs, stat, field);
  const memo = await DigestMemo.open(runDir);
  const limit = { field, maxBytes: opts.maxBytes, limitName: opts.limitName };
  const sha256 = stat.isDirectory()
    ? (await digestDir(abs, { memo, onBytes })).sha256
    : await digestFile(abs, { memo, onBytes, limit });
  await memo.save();
  return sha256;
}

/**
 * digestPath of a JSONL input (the data file, an eval set): refused, before one byte is hashed,
 * when it is larger than the text-file limit the readers would stop at anyway.
 */
export function digestTextInput(runDir: string, file: string, field: string): Promise<string> {
  return digestPath(runDir, file, field, {
    maxBytes: inputLimits().maxTextFileBytes,
    limitName: INPUT_LIMIT_ENV.maxTextFileBytes,
  });
}
