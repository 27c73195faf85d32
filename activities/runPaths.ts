/**
 * Absolute paths of a run. Relative paths in a config resolve against the worker's working
 * directory (`wmss start` makes them absolute against the user's before submitting).
 */
import path from 'node:path';
import type { RunConfig } from '../pipeline/config';

export interface ResolvedRun {
  runDir: string;
  baseModel: string;
  dataFile: string;
}

export function resolveRun(config: Pick<RunConfig, 'runDir' | 'baseModel' | 'dataFile'>): ResolvedRun {
  return { runDir: path.resolve(config.runDir), baseModel: path.resolve(config.baseModel), dataFile: path.resolve(config.dataFile) };
}
