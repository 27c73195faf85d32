/** Reading a run config file for `wmss start`/`plan`: schema errors become one readable message. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { formatConfigIssues, RunConfig } from '../pipeline/config';

export class ConfigFileError extends Error {}

export function readRunConfig(file: string): RunConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigFileError(`${file}: ${(err as Error).message}`);
  }
  const parsed = RunConfig.safeParse(raw);
  if (!parsed.success) throw new ConfigFileError(`${file}: invalid run config\n${formatConfigIssues(parsed.error)}`);
  return parsed.data;
}

/** Makes the config's paths absolute against `base` (the user's directory), so workers anywhere agree. */
export function absolutize(config: RunConfig, base = process.cwd()): RunConfig {
  const abs = (p: string) => path.resolve(base, p);
  return {
    ...config,
    runDir: abs(config.runDir),
    baseModel: abs(config.baseModel),
    dataFile: abs(config.dataFile),
    eval: { ...config.eval, datasets: config.eval.datasets.map((d) => ({ ...d, path: d.path.startsWith('bundled:') ? d.path : abs(d.path) })) },
  };
}
