/**
 * Out-of-memory back-off for the training steps: after a KernelOutOfMemory failure the next
 * attempt halves the micro-batch and doubles gradient accumulation, so the global batch, the
 * data order and therefore the run stay the same (the kernel resumes from its checkpoint).
 * The number of halvings lives in the run dir, so a retry on any worker of a shared disk sees it.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../pipeline/errors';

export interface BatchLayout {
  microBatch: number;
  gradAccum: number;
  /** How often the configured micro-batch was halved after running out of memory. */
  halvings: number;
}

export function oomFile(runDir: string, stepId: string): string {
  return path.join(runDir, '.wmss', 'oom', `${stepId}.json`);
}

export function currentLayout(
  runDir: string,
  stepId: string,
  configured: { microBatch: number; gradAccum: number },
): BatchLayout {
  let halvings = 0;
  try {
    halvings = Number(JSON.parse(readFileSync(oomFile(runDir, stepId), 'utf8')).halvings) || 0;
  } catch {
    // no out-of-memory failure recorded
  }
  const factor = 2 ** halvings;
  return { microBatch: configured.microBatch / factor, gradAccum: configured.gradAccum * factor, halvings };
}

/** Runs one training attempt with the current layout; on out-of-memory records a halving for the next one. */
export async function withOomBackoff<T>(
  runDir: string,
  stepId: string,
  configured: { microBatch: number; gradAccum: number },
  attempt: (layout: BatchLayout) => Promise<T>,
): Promise<T> {
  const layout = currentLayout(runDir, stepId, configured);
  try {
    return await attempt(layout);
  } catch (err) {
    if (!(err instanceof ApplicationFailure) || err.type !== ErrorTypes.KernelOutOfMemory) throw err;
    if (layout.microBatch % 2 !== 0) {
      throw ApplicationFailure.create({
        type: ErrorTypes.KernelOutOfMemory,
        nonRetryable: true,
        message: `${err.message}\nout of memory at micro-batch ${layout.microBatch}, which cannot be halved further; enable gradientCheckpointing, lower maxLength, or use devices with more memory`,
      });
    }
    const next = {
      halvings: layout.halvings + 1,
      microBatch: layout.microBatch / 2,
      gradAccum: layout.gradAccum * 2,
      at: new Date().toISOString(),
    };
    mkdirSync(path.dirname(oomFile(runDir, stepId)), { recursive: true });
    writeFileSync(oomFile(runDir, stepId), JSON.stringify(next, null, 2));
    throw ApplicationFailure.create({
      type: ErrorTypes.KernelOutOfMemory,
      message: `${err.message}\nthe retry uses micro-batch ${next.microBatch} × gradAccum ${next.gradAccum} (same global batch)`,
      details: err.details as unknown[] | undefined,
    });
  }
}
