/**
 * What a run may overwrite or delete: only what wmss-flow wrote into this run dir. A step
 * replaces an existing output path only when the run dir's records say that this step wrote it:
 * its manifest (`.wmss/manifests/<step>.wmss-step.json`, any cache key) or its ownership record
 * (`.wmss/owned/<step>.json`), which lists every output path the step has claimed and is written,
 * durably, before the step writes anything. So a crash between publishing and the manifest, or a
 * re-run after the manifest was removed, still knows its own outputs; a file or directory that a
 * person (or another tool) put at an output path is never replaced: the step fails with
 * ArtifactConflict, naming it. An empty directory is not worth protecting and is taken.
 *
 * Every output path is also checked against symlinks that leave the run dir (confineReal).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { writeFileDurable } from './durableFs';
import { artifactConflict } from './failures';
import type { StepManifest } from './manifest';
import { confineReal, toRunDirRelative } from './runDirPaths';
import { readInputText } from './inputFiles';

export const OWNED_DIR = '.wmss/owned';

const OwnedRecord = z.object({ format: z.literal('wmss-owned/1'), step: z.string(), paths: z.array(z.string()) });

export function ownedFile(runDir: string, stepId: string): string {
  return path.join(runDir, ...OWNED_DIR.split('/'), `${stepId}.json`);
}

/**
 * Output paths (relative, '/'-separated) that the records of `runDir` attribute to `stepId`, and
 * whether the step has an ownership record file at all.
 */
async function ownedPaths(
  runDir: string,
  stepId: string,
  manifest?: StepManifest,
): Promise<{ owned: Set<string>; recorded: boolean }> {
  const owned = new Set<string>();
  const text = await readInputText(ownedFile(runDir, stepId)).catch(() => undefined);
  if (text !== undefined) {
    try {
      const parsed = OwnedRecord.safeParse(JSON.parse(text));
      if (parsed.success) parsed.data.paths.forEach((p) => owned.add(p));
    } catch {
      // unreadable: nothing is known to be ours
    }
  }
  for (const rec of Object.values(manifest?.outputs ?? {})) owned.add(rec.path);
  return { owned, recorded: text !== undefined };
}

async function isEmptyDir(abs: string): Promise<boolean> {
  const entries = await fsp.readdir(abs).catch(() => undefined);
  return entries !== undefined && entries.length === 0;
}

/**
 * Before a step writes: refuse any output path that exists but is not this step's, check every
 * output path against escaping symlinks, and record the paths as this step's.
 */
export async function claimOutputs(
  runDir: string,
  stepId: string,
  manifest: StepManifest | undefined,
  finalPaths: Record<string, string>,
): Promise<void> {
  const { owned, recorded } = await ownedPaths(runDir, stepId, manifest);
  const claimed = new Set(owned);
  for (const [name, abs] of Object.entries(finalPaths)) {
    await confineReal(runDir, abs);
    const rel = toRunDirRelative(runDir, abs);
    const stat = await fsp.lstat(abs).catch(() => undefined);
    if (stat && !owned.has(rel) && !(stat.isDirectory() && (await isEmptyDir(abs)))) {
      throw artifactConflict(
        abs,
        `exists, but no manifest or ownership record of this run dir says that step ${stepId} wrote it (output '${name}'): ` +
          `wmss-flow never overwrites or deletes what it did not write. Move it away, or choose another runDir`,
      );
    }
    claimed.add(rel);
  }
  if (claimed.size !== owned.size || !recorded) {
    await writeFileDurable(
      ownedFile(runDir, stepId),
      `${JSON.stringify({ format: 'wmss-owned/1', step: stepId, paths: [...claimed].sort() }, null, 2)}\n`,
    );
  }
}
