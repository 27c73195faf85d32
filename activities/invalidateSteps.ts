/**
 * `wmss rerun`, run dir side: before steps run again in the same workflow, their cache entries go.
 *
 * For each step: its manifest is removed (the cache entry: without it the step is not done,
 * docs/recovery.md "Cache"). A step that publishes in place (the trainings, whose output dir holds
 * resumable checkpoints) would otherwise resume from its final checkpoint and train nothing, so its
 * recorded outputs are moved aside into `.wmss/rerun/<step>/` (a rename on the same file system; the
 * previous set-aside copy of that step is replaced) and the step trains from the start. Outputs of
 * atomic steps stay where they are: the re-run replaces them through its own staging and rename.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { RunControlActivities } from './contract';
import { readManifest, removeManifest } from './store/manifest';
import { fsyncDir } from './store/durableFs';
import { confineReal, requireAbsoluteRunDir, resolveInRunDir } from './store/runDirPaths';
import { withFsFailures } from './store/fsFailures';

export const RERUN_ASIDE_DIR = '.wmss/rerun';

async function setAside(runDir: string, stepId: string, rel: string): Promise<string | undefined> {
  const from = resolveInRunDir(runDir, rel);
  if (!(await fsp.stat(from).catch(() => undefined))) return undefined;
  await confineReal(runDir, from); // never through a symlink out of the run dir
  const dir = path.join(runDir, ...RERUN_ASIDE_DIR.split('/'), stepId);
  const to = path.join(dir, rel.split('/').join('__'));
  await fsp.mkdir(dir, { recursive: true });
  await fsp.rm(to, { recursive: true, force: true });
  await fsp.rename(from, to);
  await fsyncDir(path.dirname(from));
  return path.relative(runDir, to).split(path.sep).join('/');
}

export async function invalidateSteps(input: { runDir: string; steps: string[] }): Promise<string[]> {
  const runDir = requireAbsoluteRunDir(path.resolve(input.runDir));
  const done: string[] = [];
  for (const stepId of input.steps) {
    const manifest = await readManifest(runDir, stepId);
    if (!manifest) continue;
    // the manifest first: a crash between the two leaves a step that is simply not done
    await removeManifest(runDir, stepId);
    done.push(`.wmss/manifests/${stepId}.wmss-step.json`);
    if (manifest.mode !== 'in-place') continue;
    // the output dirs (stage1_m1/), not the checkpoints inside them that the result also names
    const paths = Object.values(manifest.outputs).map((o) => o.path);
    const dirs = paths.filter((p) => !paths.some((other) => other !== p && p.startsWith(`${other}/`)));
    for (const rel of dirs) {
      const aside = await setAside(runDir, stepId, rel);
      if (aside) done.push(`${rel} → ${aside}`);
    }
  }
  return done;
}

export function runControlActivities(): RunControlActivities {
  return withFsFailures(
    { invalidateSteps: (input) => invalidateSteps(input) },
    (input: { runDir: string }) => input.runDir,
  );
}
