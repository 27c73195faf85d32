/**
 * The sweep's two activities (workflows/wmssSweep.ts, docs/sweeps.md), on the control worker:
 *
 *  - seedPointRunDir: before a point's run starts, give its run dir the outputs and manifests of
 *    the steps it shares with an earlier point (its donor), so the point's own run finds them as verified cache
 *    hits (same cache key, same outputs) instead of computing them again. Outputs are hard links
 *    (a copy across file systems): no data is duplicated, and since every step publishes by
 *    renaming a new file or directory into place, a later re-run in one dir never writes through
 *    to the other. Each output is linked under a staging name and renamed; the manifest is written
 *    last, so a crash leaves a step either seeded completely or not at all.
 *    It links only steps the donor's run has finished (their outputs are never written again by
 *    that run) into a dir whose run has not started: no two runs ever race on one cache entry.
 *  - aggregateSweep: every point's headline results into <sweepDir>/sweep.json (fsync + rename).
 */
import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as A from '../pipeline/artifacts';
import type { StepId } from '../pipeline/steps';
import type { SweepAggregate, SweepActivities, SeedInput } from './contract';
import { readManifest, manifestFile } from './store/manifest';
import { stagingName, writeFileDurable, fsyncTree } from './store/durableFs';
import { ownedFile } from './store/ownership';
import { requireAbsoluteRunDir, resolveInRunDir } from './store/runDirPaths';
import { activityHeartbeat } from './store/heartbeat';

export const SWEEP_FILE = 'sweep.json';
export const SWEEP_FORMAT = 'wmss-sweep/1';

/** Hard-link `from` (file or directory tree, dotfiles included) to `to`; copy where links cannot cross devices. */
async function linkTree(from: string, to: string): Promise<void> {
  const stat = await fsp.lstat(from);
  if (stat.isDirectory()) {
    await fsp.mkdir(to);
    for (const entry of await fsp.readdir(from)) await linkTree(path.join(from, entry), path.join(to, entry));
    return;
  }
  if (!stat.isFile()) throw new Error(`${from}: not a regular file or directory; a run dir output must be one`);
  await fsp.link(from, to).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EXDEV' && err.code !== 'EPERM') throw err;
    await fsp.copyFile(from, to);
  });
}

export async function seedPointRunDir(input: SeedInput): Promise<{ seeded: StepId[]; kept: StepId[] }> {
  const from = requireAbsoluteRunDir(input.from);
  const to = requireAbsoluteRunDir(input.to);
  await fsp.mkdir(to, { recursive: true });
  const seeded: StepId[] = [];
  const kept: StepId[] = [];
  for (const step of input.steps) {
    activityHeartbeat({ step });
    // the point's own records win: a run that has started there (manifest or ownership) is not touched
    if (existsSync(manifestFile(to, step)) || existsSync(ownedFile(to, step))) {
      kept.push(step);
      continue;
    }
    const manifest = await readManifest(from, step);
    if (!manifest) continue; // the donor has no record: the point computes the step itself
    for (const rec of Object.values(manifest.outputs)) {
      const target = resolveInRunDir(to, rec.path);
      await fsp.mkdir(path.dirname(target), { recursive: true });
      // what an earlier, interrupted seeding left at the path (no manifest, no ownership: not a run's)
      await fsp.rm(target, { recursive: true, force: true });
      const staged = stagingName(target);
      try {
        await linkTree(resolveInRunDir(from, rec.path), staged);
        await fsyncTree(staged);
        await fsp.rename(staged, target);
      } catch (err) {
        await fsp.rm(staged, { recursive: true, force: true });
        throw err;
      }
    }
    await writeFileDurable(manifestFile(to, step), `${JSON.stringify(manifest, null, 2)}\n`);
    seeded.push(step);
  }
  return { seeded, kept };
}

/** pass@1 per model and set from results/<label>/summary.json of a run dir. */
function accuracyOf(runDir: string): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  const results = path.join(runDir, A.RESULTS_DIR);
  if (!existsSync(results)) return out;
  for (const label of readdirSync(results)) {
    const file = path.join(results, label, 'summary.json');
    if (!existsSync(file)) continue;
    const summary = JSON.parse(readFileSync(file, 'utf8')) as { datasets?: Record<string, { pass_at_1?: number }> };
    for (const [set, s] of Object.entries(summary.datasets ?? {}))
      if (typeof s.pass_at_1 === 'number') (out[label] ??= {})[set] = s.pass_at_1;
  }
  return out;
}

export async function aggregateSweep(input: SweepAggregate): Promise<string> {
  const dir = requireAbsoluteRunDir(input.sweepDir);
  const file = path.join(dir, SWEEP_FILE);
  const points = input.points.map((p) => ({ ...p, accuracy: p.state === 'completed' ? accuracyOf(p.runDir) : {} }));
  const doc = { format: SWEEP_FORMAT, ...input, points, aggregatedAt: new Date().toISOString() };
  await writeFileDurable(file, `${JSON.stringify(doc, null, 2)}\n`);
  return file;
}

export function sweepActivities(): SweepActivities {
  return { seedPointRunDir, aggregateSweep };
}
