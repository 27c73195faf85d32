/**
 * Disk safety for the steps that write models (4 snapshot, 1 SFT, 5a fuse, 5b joint, 6 extract):
 * before writing, the free space of the run dir's file system (statfs, blocks available to
 * unprivileged users) is compared with an estimate of what the step will write (model size ×
 * copies), plus `disk.headroomGB`. A step that does not fit fails at once with InsufficientDisk,
 * instead of filling the disk hours later in the middle of a checkpoint.
 *
 * And retention: `keepCheckpoints: N` deletes complete training checkpoints older than the newest
 * N. It never deletes the newest complete checkpoint (the one training resumes from and the later
 * steps read), nor anything incomplete (`.partial`, no COMPLETE marker), which the kernel owns.
 */
import { promises as fsp, statfsSync, type StatsFs } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../pipeline/errors';
import type { RunConfig } from '../../pipeline/config';
import { stepRow, type StepId } from '../../pipeline/steps';
import { listModelTensors, hasSafetensors } from './safetensors';
import { topLevelFiles } from './modelDir';
import { INPUT_LIMIT_ENV, inputLimits, openInput, readChunks } from './inputFiles';

export interface DiskEstimate {
  bytes: number;
  /** How the figure was reached, for the error message: "3 checkpoints × 2.3 GB (weights + AdamW state)". */
  what: string;
}

export type Statfs = (dir: string) => Pick<StatsFs, 'bavail' | 'bsize'>;

const GB = 1e9;
export const formatGB = (bytes: number) =>
  bytes >= 1e8 ? `${(bytes / GB).toFixed(1)} GB` : bytes >= 1e5 ? `${(bytes / 1e6).toFixed(1)} MB` : `${bytes} bytes`;

/** The nearest existing ancestor of `p` (statfs needs an existing path). */
export async function existingAncestor(p: string): Promise<string> {
  let cur = path.resolve(p);
  for (;;) {
    if (
      await fsp.stat(cur).then(
        () => true,
        () => false,
      )
    )
      return cur;
    const parent = path.dirname(cur);
    if (parent === cur) return cur;
    cur = parent;
  }
}

/** Bytes available to this (unprivileged) process on the file system holding `dir`. */
export async function freeBytes(dir: string, statfs: Statfs = statfsSync): Promise<number> {
  const s = statfs(await existingAncestor(dir));
  return Number(s.bavail) * Number(s.bsize);
}

/**
 * Fail with InsufficientDisk when `estimate` plus the configured headroom does not fit in the free
 * space of `dir`'s file system. Does nothing when `disk.check` is false or there is no estimate.
 */
export async function requireDiskSpace(
  config: Pick<RunConfig, 'disk'> | Partial<Pick<RunConfig, 'disk'>>,
  stepId: StepId,
  dir: string,
  estimate: DiskEstimate | undefined,
  statfs: Statfs = statfsSync,
): Promise<void> {
  const disk = config.disk ?? { check: true, headroomGB: 1 };
  if (!disk.check || !estimate || estimate.bytes <= 0) return;
  const headroom = disk.headroomGB * GB;
  const free = await freeBytes(dir, statfs);
  if (free >= estimate.bytes + headroom) return;
  const row = stepRow(stepId);
  const keep = stepId === 'sft' || stepId === 'joint' ? ` or set ${stepId}.keepCheckpoints,` : '';
  throw ApplicationFailure.create({
    type: ErrorTypes.InsufficientDisk,
    nonRetryable: true,
    message:
      `step ${row.number} (${row.title}) needs about ${formatGB(estimate.bytes)} in ${dir} (${estimate.what}) plus ${formatGB(headroom)} headroom (disk.headroomGB), ` +
      `but only ${formatGB(free)} are free on its file system. Free space${keep} then resume the run (wmss resume): finished steps are reused.`,
    details: [{ dir, neededBytes: estimate.bytes, headroomBytes: headroom, freeBytes: free }],
  });
}

/** Bytes of every top-level non-dot file of a model dir (what a snapshot copies). */
export async function modelDirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const f of await topLevelFiles(dir)) total += (await fsp.stat(path.join(dir, f))).size;
  return total;
}

const DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  I64: 8,
  U64: 8,
  F32: 4,
  I32: 4,
  U32: 4,
  F16: 2,
  BF16: 2,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** Tensor bytes and element count of a safetensors model dir, optionally only keys with `prefix`. */
export async function modelTensorStats(dir: string, prefix = ''): Promise<{ bytes: number; params: number }> {
  if (!(await hasSafetensors(dir))) {
    const bytes = await modelDirBytes(dir);
    return { bytes, params: bytes / 2 }; // .bin weights: assume 16-bit
  }
  const { tensors } = await listModelTensors(dir);
  let bytes = 0;
  let params = 0;
  for (const t of tensors) {
    if (!t.name.startsWith(prefix)) continue;
    bytes += t.byteLength;
    params += t.byteLength / (DTYPE_BYTES[t.dtype] ?? 2);
  }
  return { bytes, params };
}

const CHECKPOINT = /^checkpoint-(\d+)$/;

/** Complete checkpoints (`checkpoint-<step>/COMPLETE`) of a training output dir, oldest first. */
export async function completeCheckpoints(outputDir: string): Promise<{ step: number; dir: string }[]> {
  const entries = await fsp.readdir(outputDir, { withFileTypes: true }).catch(() => []);
  const found: { step: number; dir: string }[] = [];
  for (const e of entries) {
    const m = CHECKPOINT.exec(e.name);
    if (!m || !e.isDirectory()) continue;
    const dir = path.join(outputDir, e.name);
    if (
      await fsp.stat(path.join(dir, 'COMPLETE')).then(
        (s) => s.isFile(),
        () => false,
      )
    )
      found.push({ step: Number(m[1]), dir });
  }
  return found.sort((a, b) => a.step - b.step);
}

/**
 * Delete complete checkpoints older than the newest `keep` (≥ 1). Never the newest complete one,
 * never an incomplete one. Returns the deleted directories.
 */
export async function pruneCheckpoints(outputDir: string, keep: number | undefined): Promise<string[]> {
  if (!keep || keep < 1) return [];
  const complete = await completeCheckpoints(outputDir);
  const doomed = complete.slice(0, Math.max(0, complete.length - keep));
  for (const c of doomed) {
    // Renamed first so that a crash half-way through leaves no checkpoint-N without its files.
    const aside = `${c.dir}.pruned`;
    await fsp.rm(aside, { recursive: true, force: true });
    await fsp.rename(c.dir, aside);
    await fsp.rm(aside, { recursive: true, force: true });
  }
  return doomed.map((c) => c.dir);
}

/** Optimizer steps a training run makes, and the steps at which it writes a checkpoint. */
export function checkpointSteps(totalSteps: number, saveEvery: number): number[] {
  const steps: number[] = [];
  if (saveEvery > 0) for (let s = saveEvery; s < totalSteps; s += saveEvery) steps.push(s);
  if (totalSteps > 0) steps.push(totalSteps);
  return steps;
}

/** Non-blank lines of a text file, streamed (the number of records of a data file). */
export async function countLines(file: string): Promise<number> {
  const opened = await openInput(file, {
    maxBytes: inputLimits().maxTextFileBytes,
    limitName: INPUT_LIMIT_ENV.maxTextFileBytes,
  });
  let lines = 0;
  let blank = true;
  try {
    for await (const buf of readChunks(opened, 1 << 20)) {
      for (let i = 0; i < buf.length; i++) {
        const c = buf[i];
        if (c === 10) {
          if (!blank) lines++;
          blank = true;
        } else if (c !== 13 && c !== 32 && c !== 9) blank = false;
      }
    }
  } finally {
    await opened.handle.close();
  }
  return blank ? lines : lines + 1;
}

export interface TrainingEstimateInput {
  /** Parameters of the model trained, and of those the trainable ones (AdamW keeps two moments of each). */
  params: number;
  trainableParams: number;
  /** Bytes per weight as training saves them (4 for float32, 2 for bfloat16). */
  bytesPerParam: number;
  totalSteps: number;
  saveEvery: number;
  keepCheckpoints?: number;
  /** Step of the newest complete checkpoint already on disk (0: none), and how many complete ones exist. */
  resumeStep: number;
  existing: number;
}

/**
 * What a training step still writes: each checkpoint holds the weights and AdamW's two moments of
 * the trainable weights (same dtype as the weights). Without retention every remaining checkpoint
 * stays; with keepCheckpoints N at most N + 1 exist at once (the new one is complete before the
 * oldest goes), counting those already there.
 */
export function trainingEstimate(t: TrainingEstimateInput): DiskEstimate {
  const perCheckpoint = (t.params + 2 * t.trainableParams) * t.bytesPerParam;
  const remaining = checkpointSteps(t.totalSteps, t.saveEvery).filter((s) => s > t.resumeStep).length;
  const copies = t.keepCheckpoints
    ? Math.max(0, Math.min(t.keepCheckpoints + 1, t.existing + remaining) - t.existing)
    : remaining;
  return {
    bytes: copies * perCheckpoint,
    what: `${copies} checkpoint${copies === 1 ? '' : 's'} × ${formatGB(perCheckpoint)} (weights + AdamW state)${t.keepCheckpoints ? `, keepCheckpoints ${t.keepCheckpoints}` : ` of ${remaining} still to write`}`,
  };
}

/** An estimate, or none when the inputs cannot be measured: the step's own checks then report what is wrong with them. */
export async function estimateOrNone(fn: () => Promise<DiskEstimate>): Promise<DiskEstimate | undefined> {
  try {
    return await fn();
  } catch {
    return undefined;
  }
}
