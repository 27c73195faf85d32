/** Locations inside the wmss-flow checkout, found from this file whether run from source or dist/. */
import { existsSync } from 'node:fs';
import path from 'node:path';

function findRepoRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'kernels'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`wmss-flow checkout not found above ${start}`);
  }
}

export const REPO_ROOT = findRepoRoot(__dirname);
export const KERNELS_DIR = path.join(REPO_ROOT, 'kernels');
export const VENV_BIN = path.join(REPO_ROOT, '.venv', 'bin');
