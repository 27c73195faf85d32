/**
 * Writes that survive a power cut: data is fsynced before the rename that makes it visible, and
 * the directory is fsynced after, so a reader sees either the old file or the complete new one.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { withPath } from './fsFailures';

export async function fsyncFile(file: string): Promise<void> {
  const handle = await fsp.open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch (err) {
    // Some filesystems refuse fsync on a directory (EINVAL/EISDIR); the rename is then as durable as they allow.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw err;
  } finally {
    await handle?.close();
  }
}

/** fsync every regular file under `target` (a file or a directory tree), then the directories. */
export async function fsyncTree(target: string): Promise<void> {
  const stat = await fsp.stat(target);
  if (!stat.isDirectory()) return fsyncFile(target);
  for (const entry of await fsp.readdir(target, { withFileTypes: true })) {
    const child = path.join(target, entry.name);
    if (entry.isDirectory() || entry.isFile()) await fsyncTree(child);
  }
  await fsyncDir(target);
}

/** A sibling name for work in progress, unique per attempt; `isStagingOf` recognises leftovers. */
export function stagingName(finalPath: string, tag: 'partial' | 'old' = 'partial'): string {
  return `${finalPath}.${tag}-${randomBytes(6).toString('hex')}`;
}

export function isStagingOf(baseName: string, candidate: string): boolean {
  return candidate.startsWith(`${baseName}.partial-`) || candidate.startsWith(`${baseName}.old-`);
}

/** Write `data` to `file` and fsync it; `flag` 'wx' fails with EEXIST when the file exists. */
export async function writeFileSynced(file: string, data: string | Uint8Array, flag: 'w' | 'wx' = 'w'): Promise<void> {
  const handle = await fsp.open(file, flag);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    throw withPath(err, file); // a write through a handle names no path: ENOSPC must say which file
  } finally {
    await handle.close();
  }
}

/** Write `data` to `file` via a fsynced temporary sibling and a rename. */
export async function writeFileDurable(file: string, data: string | Uint8Array): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = stagingName(file);
  try {
    await writeFileSynced(tmp, data);
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(file));
}

/**
 * Put a complete `staged` file or directory at `finalPath`, replacing what is there. A directory
 * cannot be renamed over a non-empty one, so the old one is first moved aside: a crash in between
 * leaves nothing at `finalPath` (never a mix) and a `.old-` leftover that the next start removes.
 */
export async function replaceWithStaged(staged: string, finalPath: string): Promise<void> {
  const existing = await fsp.lstat(finalPath).catch(() => undefined);
  let aside: string | undefined;
  if (existing) {
    aside = stagingName(finalPath, 'old');
    await fsp.rename(finalPath, aside);
  }
  await fsp.rename(staged, finalPath);
  await fsyncDir(path.dirname(finalPath));
  if (aside) await fsp.rm(aside, { recursive: true, force: true });
}
