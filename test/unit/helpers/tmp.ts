/** Temporary directories for tests, removed after each file's tests. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RunConfig } from '../../../pipeline/config';
import type { StepId, StepInput, StepResult } from '../../../pipeline/steps';

const made: string[] = [];

export function tmpDir(prefix = 'wmss-unit-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function cleanupTmp(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export function stepInput(
  stepId: StepId,
  runDir: string,
  overrides: Record<string, unknown> = {},
  deps: Partial<Record<StepId, StepResult>> = {},
): StepInput {
  const config = RunConfig.parse({
    runName: 'unit',
    runDir,
    baseModel: path.join(runDir, 'base'),
    dataFile: path.join(runDir, 'train.jsonl'),
    ...overrides,
  });
  return { stepId, config, deps };
}

/** The ApplicationFailure fields a test checks, from a rejected promise. */
export async function failureOf(
  promise: Promise<unknown>,
): Promise<{ type: string; message: string; nonRetryable: boolean; details: unknown[] }> {
  try {
    await promise;
  } catch (err) {
    const e = err as { type?: string; message: string; nonRetryable?: boolean; details?: unknown[] };
    return { type: e.type ?? '', message: e.message, nonRetryable: e.nonRetryable ?? false, details: e.details ?? [] };
  }
  throw new Error('expected a failure');
}
