/** Paths inside a run dir: every artifact path is checked to stay inside it. */
import path from 'node:path';
import { artifactConflict } from './failures';

export function requireAbsoluteRunDir(runDir: string): string {
  if (!path.isAbsolute(runDir)) throw artifactConflict(runDir, 'runDir must be an absolute path');
  return path.normalize(runDir);
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
