/** Hugging Face model directories: config.json, tokenizer files, weights, copying files out. */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { invalidInput } from './failures';
import { readInputText } from './inputFiles';
import { throwIfCancelled } from './heartbeat';
import { writeFileDurable } from './durableFs';

export type ModelConfig = Record<string, unknown> & { model_type: string };

export async function readJsonObject(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readInputText(file);
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    throw invalidInput(
      file,
      undefined,
      undefined,
      `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw invalidInput(file, undefined, undefined, `invalid JSON: ${(err as Error).message}`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw invalidInput(file, undefined, undefined, 'expected a JSON object');
  return value as Record<string, unknown>;
}

/** config.json of a model dir; it must name its model_type. */
export async function readModelConfig(dir: string): Promise<ModelConfig> {
  const file = path.join(dir, 'config.json');
  const dirStat = await fsp.stat(dir).catch(() => undefined);
  if (!dirStat?.isDirectory())
    throw invalidInput(
      dir,
      undefined,
      undefined,
      dirStat ? 'is not a directory: expected a Hugging Face model dir' : 'model dir does not exist',
    );
  if (
    !(await fsp.stat(file).then(
      (s) => s.isFile(),
      () => false,
    ))
  )
    throw invalidInput(file, undefined, undefined, 'missing: every Hugging Face model dir has a config.json');
  const config = await readJsonObject(file);
  if (typeof config.model_type !== 'string' || !config.model_type)
    throw invalidInput(file, undefined, 'model_type', 'config.json has no model_type: not a Hugging Face model dir');
  return config as ModelConfig;
}

const TOKENIZER_FILE =
  /^(tokenizer(_config)?\.json|tokenizer\.model|special_tokens_map\.json|added_tokens\.json|vocab\.(json|txt)|merges\.txt|chat_template\.(jinja|json)|spiece\.model|.+\.tiktoken)$/;

export function isTokenizerFile(name: string): boolean {
  return TOKENIZER_FILE.test(name);
}

/** Regular files directly in `dir` (symlinks followed, as in HF cache snapshots), dotfiles skipped, sorted. */
export async function topLevelFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for (const name of await fsp.readdir(dir)) {
    if (name.startsWith('.')) continue;
    const stat = await fsp.stat(path.join(dir, name)).catch(() => undefined);
    if (stat?.isFile()) names.push(name);
  }
  return names.sort();
}

/** Copy files by name from `srcDir` into `destDir` (kernel-side copy; reflink where the filesystem can). */
export async function copyFiles(
  srcDir: string,
  names: string[],
  destDir: string,
  onFile?: (name: string, index: number) => void,
): Promise<number> {
  await fsp.mkdir(destDir, { recursive: true });
  let bytes = 0;
  for (const [i, name] of names.entries()) {
    throwIfCancelled();
    onFile?.(name, i);
    await fsp.copyFile(path.join(srcDir, name), path.join(destDir, name));
    bytes += (await fsp.stat(path.join(destDir, name))).size;
  }
  return bytes;
}

export async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFileDurable(file, `${JSON.stringify(value, null, 2)}\n`);
}
