/**
 * Absolute paths of a run. Relative paths in a config resolve against the worker's working
 * directory (`wmss start` makes them absolute against the user's before submitting; runs
 * started with `temporal workflow start` may carry relative ones).
 *
 * The run dir is also resolved to its real path, here at the start of every step activity: the
 * workflow cannot (no I/O in workflow code) and runs started without `wmss` never pass the client.
 * A run dir that is a symlink then works like any other: the kernels report checkpoints under the
 * real path, which must compare equal to the run dir's. The data file and base model keep the
 * spelling of the config (errors name them as the user wrote them); they are only read.
 */
import path from 'node:path';
import { realRunDir } from './store/runDirPaths';
import type { RunConfig } from '../pipeline/config';
import type { StepInput, StepResult } from '../pipeline/steps';
import { withFsFailures } from './store/fsFailures';

export interface ResolvedRun {
  runDir: string;
  baseModel: string;
  dataFile: string;
}

export function resolveRun(config: Pick<RunConfig, 'runDir' | 'baseModel' | 'dataFile'>): ResolvedRun {
  return {
    runDir: realRunDir(config.runDir),
    baseModel: path.resolve(config.baseModel),
    dataFile: path.resolve(config.dataFile),
  };
}

type StepFn = (input: StepInput) => Promise<StepResult>;

/**
 * Wraps step activities so each sees a config whose paths are absolute, and so a full disk or a
 * read-only path fails the step as a typed non-retryable failure naming the path (fsFailures.ts)
 * instead of five crash retries.
 */
export function withResolvedPaths<T extends Record<string, StepFn>>(activities: T): T {
  const wrapped = Object.entries(activities).map(([name, fn]) => [
    name,
    (input: StepInput) => fn({ ...input, config: { ...input.config, ...resolveRun(input.config) } }),
  ]);
  return withFsFailures(Object.fromEntries(wrapped) as T, (input: StepInput) => resolveRun(input.config).runDir);
}
