/**
 * The step manifest `<runDir>/.wmss/manifests/<stepId>.wmss-step.json`: the commit point of a
 * step. It exists only once every output is complete and in place.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { manifestPath } from '../../pipeline/artifacts';
import { StepResult } from '../../pipeline/steps';
import { FileDigest } from './digest';
import { writeFileDurable } from './durableFs';
import { readInputText } from './inputFiles';

export const MANIFEST_FORMAT = 'wmss-step/1';

export const RecordedOutput = z.object({
  /** Relative to the run dir, '/'-separated. */
  path: z.string(),
  kind: z.enum(['file', 'dir']),
  size: z.number(),
  /** File: its sha256; directory: sha256 over its sorted file list (see digest.ts combineDirDigest). */
  sha256: z.string(),
  /** Directories only: every regular file, relative to the directory. */
  files: z.array(FileDigest).optional(),
});
export type RecordedOutput = z.infer<typeof RecordedOutput>;

export const StepManifest = z.object({
  format: z.literal(MANIFEST_FORMAT),
  step: z.string(),
  cacheKey: z.string(),
  /** The JSON the step hashed into its key (config slice, input digests, versions). */
  keyMaterial: z.unknown(),
  /** Cache keys and output digests of the steps this one read. */
  inputs: z.record(z.string(), z.object({ cacheKey: z.string(), outputsDigest: z.string().nullable() })),
  mode: z.enum(['atomic', 'in-place']),
  wmssFlowVersion: z.string(),
  host: z.string(),
  outputs: z.record(z.string(), RecordedOutput),
  result: StepResult,
  timings: z.object({
    startedAt: z.string(),
    finishedAt: z.string(),
    produceMs: z.number(),
    publishMs: z.number(),
    digestMs: z.number(),
  }),
});
export type StepManifest = z.infer<typeof StepManifest>;

export function manifestFile(runDir: string, stepId: string): string {
  return path.join(runDir, ...manifestPath(stepId).split('/'));
}

/** The step's manifest, or undefined when there is none or it is unreadable (then the step is simply not done). */
export async function readManifest(runDir: string, stepId: string): Promise<StepManifest | undefined> {
  let text: string;
  try {
    // bounded: a FIFO or device planted in a run dir must not hang the step that looks for its manifest
    text = await readInputText(manifestFile(runDir, stepId));
  } catch {
    return undefined;
  }
  try {
    const parsed = StepManifest.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export async function writeManifest(runDir: string, manifest: StepManifest): Promise<void> {
  await writeFileDurable(manifestFile(runDir, manifest.step), `${JSON.stringify(manifest, null, 2)}\n`);
}

export async function removeManifest(runDir: string, stepId: string): Promise<void> {
  await fsp.rm(manifestFile(runDir, stepId), { force: true });
}

/** One digest over all recorded outputs: what a dependent step hashes into its own key. */
export function outputsDigestOf(manifest: StepManifest): string {
  const parts = Object.keys(manifest.outputs)
    .sort()
    .map((name) => `${name}\t${manifest.outputs[name].path}\t${manifest.outputs[name].sha256}`);
  return createHash('sha256').update(parts.join('\n')).digest('hex');
}
