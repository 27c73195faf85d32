/** Paths inside a run dir: every artifact path is checked to stay inside it. */
import { promises as fsp, realpathSync } from 'node:fs';
import path from 'node:path';
import { artifactConflict } from './failures';

export function requireAbsoluteRunDir(runDir: string): string {
  if (!path.isAbsolute(runDir)) throw artifactConflict(runDir, 'runDir must be an absolute path');
  return path.normalize(runDir);
}

/**
 * The real path of a run dir (symlinks resolved; of its nearest existing ancestor, with the rest
 * appended, when it does not exist yet). A run dir is commonly a link (scratch space linked into a
 * home dir), while kernels, `realpath` and the checkpoints they report name the real path: every
 * path check compares against this one, so the two spellings of one dir never look like an escape.
 */
export function realRunDir(runDir: string): string {
  const rest: string[] = [];
  let cur = path.resolve(runDir);
  for (;;) {
    try {
      return path.join(realpathSync.native(cur), ...rest.reverse());
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR')
        throw artifactConflict(runDir, `the run dir cannot be resolved: ${code ?? (err as Error).message}`);
      const parent = path.dirname(cur);
      if (parent === cur) return path.join(cur, ...rest.reverse());
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

function isInside(runDir: string, abs: string): boolean {
  const rel = path.relative(runDir, abs);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** Absolute path of `rel` (relative, '/'-separated, no `..`) inside `runDir`; ArtifactConflict otherwise. */
export function resolveInRunDir(runDir: string, rel: string): string {
  if (path.isAbsolute(rel) || rel.split(/[\\/]/).includes('..') || rel.includes('\0')) {
    throw artifactConflict(rel, `output path must be relative to the run dir, without '..' (run dir ${runDir})`);
  }
  const abs = path.resolve(runDir, rel);
  if (!isInside(runDir, abs)) throw artifactConflict(rel, `output path resolves outside the run dir ${runDir}`);
  return abs;
}

/** Accept an absolute path inside `runDir` (as kernels report them) or a relative one; return it relative, '/'-separated. */
export function toRunDirRelative(runDir: string, p: string): string {
  if (!path.isAbsolute(p)) return path.relative(runDir, resolveInRunDir(runDir, p)).split(path.sep).join('/');
  const abs = path.normalize(p);
  if (!isInside(runDir, abs)) throw artifactConflict(p, `output path lies outside the run dir ${runDir}`);
  return path.relative(runDir, abs).split(path.sep).join('/');
}

/** The real path of `p`, or of its nearest existing ancestor with the rest appended. */
async function realPathOf(p: string): Promise<string> {
  const rest: string[] = [];
  let cur = path.resolve(p);
  for (;;) {
    try {
      return path.join(await fsp.realpath(cur), ...rest.reverse());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR')
        throw err;
      const parent = path.dirname(cur);
      if (parent === cur) return path.join(cur, ...rest.reverse());
      rest.push(path.basename(cur));
      cur = parent;
    }
  }
}

/**
 * Refuse `abs` (a path inside `runDir` by name) when a symlink on the way takes it out of the run
 * dir: every existing component between the run dir and `abs`, `abs` included, must resolve
 * inside the run dir's real path. Symlinks that stay inside are fine; the run dir itself may be a
 * symlink (e.g. /data → /mnt/data). ArtifactConflict otherwise.
 */
export async function confineReal(runDir: string, abs: string): Promise<string> {
  const root = await realPathOf(runDir);
  const rel = path.relative(path.resolve(runDir), path.resolve(abs));
  if (rel.startsWith('..') || path.isAbsolute(rel))
    throw artifactConflict(abs, `path lies outside the run dir ${runDir}`);
  let cur = path.resolve(runDir);
  for (const part of rel === '' ? [] : rel.split(path.sep)) {
    cur = path.join(cur, part);
    const stat = await fsp.lstat(cur).catch(() => undefined);
    if (!stat) break; // the rest does not exist yet: it will be created inside
    if (!stat.isSymbolicLink()) continue;
    const target = await realPathOf(cur);
    const inside = path.relative(root, target);
    if (inside.startsWith('..') || path.isAbsolute(inside)) {
      throw artifactConflict(
        abs,
        `${cur} is a symlink to ${target}, outside the run dir ${runDir}: wmss-flow writes only inside the run dir`,
      );
    }
  }
  return abs;
}
