/**
 * Reading a run config file for `wmss start`/`plan`/`schedule create`/`resume`: every problem
 * becomes one line `file:line:col: field: message`, pointing at the line the user must edit.
 */
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { z } from 'zod';
import { RunConfig } from '../pipeline/config';
import { applyPreset } from '../pipeline/presets';
import { parseModelId } from '../pipeline/modelRef';
import { withBenchmarkPaths } from '../pipeline/stepDefinitions/evaluate';
import { JsonSourceError, parseJsonWithPositions, type SourcePos } from './jsonSource';

export class ConfigFileError extends Error {}

export interface LoadedRunConfig {
  config: RunConfig;
  /** Where a dotted field (`sft.epochs`) is in the file, or undefined when it is not written there. */
  where(field: string): SourcePos | undefined;
  file: string;
  /** The file's JSON as written (before preset and defaults). */
  raw: unknown;
}

const at = (file: string, pos?: SourcePos) => (pos ? `${file}:${pos.line}:${pos.col}` : file);

function issueLine(file: string, keys: Map<string, SourcePos>, issue: z.core.$ZodIssue): string {
  // An unknown key is reported on its parent; point at the key itself.
  const path = issue.code === 'unrecognized_keys' && issue.keys.length ? [...issue.path, issue.keys[0]] : issue.path;
  let pos: SourcePos | undefined;
  // The deepest part of the path that the file spells out (a missing field points at its parent).
  for (let n = path.length; n > 0 && !pos; n--) pos = keys.get(path.slice(0, n).join('.'));
  const field = issue.path.length ? issue.path.join('.') : '(root)';
  return `${at(file, pos ?? { line: 1, col: 1 })}: ${field}: ${issue.message}`;
}

/** A JSON file (run config or sweep file) with the position of every key; unreadable or malformed → ConfigFileError `file:line:col`. */
export function readJsonFile(file: string): ReturnType<typeof parseJsonWithPositions> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigFileError(`${file}: ${(err as Error).message}`);
  }
  // Windows editors save UTF-8 with a byte-order mark, which JSON.parse rejects as a token.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return parseJsonWithPositions(text);
  } catch (err) {
    if (err instanceof JsonSourceError) throw new ConfigFileError(`${at(file, err.pos)}: ${err.message}`);
    throw err;
  }
}

export function loadRunConfig(file: string): LoadedRunConfig {
  const parsed = readJsonFile(file);
  const result = RunConfig.safeParse(applyPreset(parsed.value));
  if (!result.success)
    throw new ConfigFileError(
      `${file}: invalid run config\n${result.error.issues.map((i) => issueLine(file, parsed.keys, i)).join('\n')}`,
    );
  return { config: result.data, where: (field) => parsed.keys.get(field), file, raw: parsed.value };
}

export function readRunConfig(file: string): RunConfig {
  return loadRunConfig(file).config;
}

/**
 * A Hugging Face id stays an id (the workers resolve it), unless a directory of that name exists
 * here: then, as transformers does, the directory wins (pipeline/modelRef.ts).
 */
function modelPathOrId(value: string, base: string): string {
  const local = path.resolve(base, value);
  return parseModelId(value) && !statSync(local, { throwIfNoEntry: false })?.isDirectory() ? value : local;
}

/** Makes the config's paths absolute against `base` (the user's directory), so workers anywhere agree. */
export function absolutize(config: RunConfig, base = process.cwd()): RunConfig {
  const abs = (p: string) => path.resolve(base, p);
  return {
    ...config,
    runDir: abs(config.runDir),
    baseModel: modelPathOrId(config.baseModel, base),
    dataFile: abs(config.dataFile),
    eval: withBenchmarkPaths(config.eval, abs),
  };
}

/** Directories of the system itself: a run there could fill or clobber what the machine needs. */
const SYSTEM_TREES = [
  '/etc',
  '/usr',
  '/bin',
  '/sbin',
  '/boot',
  '/dev',
  '/proc',
  '/sys',
  '/lib',
  '/lib32',
  '/lib64',
  '/libx32',
  '/run',
  '/snap',
];
/** Directories that hold other things: a run may live below them, never in them. */
const SHARED_ROOTS = [
  '/',
  '/var',
  '/var/lib',
  '/var/log',
  '/home',
  '/tmp',
  '/var/tmp',
  '/opt',
  '/mnt',
  '/media',
  '/srv',
  '/root',
  '/data',
  '/scratch',
  '/nfs',
];

/**
 * Why a run dir must not be used, or undefined when it may. Steps write and replace artifacts in
 * the run dir and retention deletes checkpoints there, so it must not be a system directory, a
 * directory shared by many things (/, /home, the home directory), or a non-empty directory that
 * is not already a run dir (one with `.wmss/`, where ownership records say what a run may touch):
 * a typo like `"runDir": "~"` or `"."` in a project checkout is refused before anything starts.
 */
export function unsafeRunDir(
  runDir: string,
  home = os.homedir(),
  opts: { parentOfRuns?: boolean } = {},
): string | undefined {
  // Date templates ({date}, {workflowId}) are resolved when the run starts: check the part before them.
  const fixed = runDir.includes('{') ? path.dirname(runDir.slice(0, runDir.indexOf('{')) + 'x') : runDir;
  let real = path.resolve(fixed);
  try {
    real = realpathSync(real);
  } catch {
    // does not exist (yet): the run creates it
  }
  const shared = new Set(SHARED_ROOTS);
  if (home) shared.add(path.resolve(home)).add(path.dirname(path.resolve(home)));
  for (const p of new Set([path.resolve(fixed), real])) {
    if (shared.has(p))
      return `${p} is ${p === path.resolve(home) ? 'the home directory' : 'a directory shared by the whole system'}; use a directory of its own below it, e.g. ${path.join(p === '/' ? '/data' : p, 'wmss-runs', '<run name>')}`;
    const tree = SYSTEM_TREES.find((t) => p === t || p.startsWith(`${t}/`));
    if (tree) return `${p} is inside the system directory ${tree}; put runs on a data disk`;
  }
  // A schedule's runs each get their own dir below it (pipeline/runTemplates.ts): it fills up by design.
  if (opts.parentOfRuns || runDir !== fixed || !existsSync(real)) return undefined;
  if (!statSync(real).isDirectory()) return `${real} exists and is not a directory`;
  const entries = readdirSync(real);
  if (entries.length === 0 || entries.includes('.wmss')) return undefined;
  const shown = entries.slice(0, 5).join(', ') + (entries.length > 5 ? `, … (${entries.length} entries)` : '');
  return `${real} is not empty (${shown}) and is not a wmss run dir (no .wmss/): a run writes and deletes files there, so give it an empty or new directory`;
}

/**
 * The config of `wmss start`/`plan`/`schedule create`: read, paths made absolute, run dir checked
 * (`scheduled`: the run dir is the parent of the scheduled runs' own dirs).
 */
export function readRunConfigForRun(file: string, opts: { base?: string; scheduled?: boolean } = {}): RunConfig {
  const loaded = loadRunConfig(file);
  const config = absolutize(loaded.config, opts.base ?? process.cwd());
  const why = unsafeRunDir(config.runDir, os.homedir(), { parentOfRuns: opts.scheduled });
  if (why) throw new ConfigFileError(`${at(file, loaded.where('runDir'))}: runDir: ${why}`);
  return config;
}
