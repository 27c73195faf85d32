/**
 * Step 7's sets, shared by the torch and ONNX backends: eval.benchmarks resolved against the
 * bundled sets of data/eval (file, row count, SHA-256, budgets from paper-protocol.json), their
 * identities for the cache key, every row validated before any model is loaded (onnx/data.ts, the
 * same checks and messages as the kernel's eval_data.load_rows), and the results of an earlier run
 * kept aside unless eval.overwrite.
 */
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import * as A from '../pipeline/artifacts';
import type { RunConfig } from '../pipeline/config';
import { DEFAULT_BUDGET, isBundledSet, type EvalSet } from '../pipeline/stepDefinitions/evaluate';
import { digestTextInput } from './store/digest';
import { loadEvalRows } from './onnx/data';
import { REPO_ROOT } from './repoPaths';

export const EVAL_DATA_DIR = path.join(REPO_ROOT, 'data', 'eval');

const BundledSet = z.object({
  title: z.string(),
  file: z.string(),
  rows: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  maxInputTokens: z.number().int().positive(),
  maxNewTokens: z.number().int().positive(),
});
const PaperProtocol = z.object({
  systemPrompt: z.string(),
  sftSystemPrompt: z.string(),
  sets: z.record(z.string(), BundledSet),
});
export type BundledSet = z.infer<typeof BundledSet>;
export type { EvalSet };

let protocol: z.infer<typeof PaperProtocol> | undefined;
/** data/eval/paper-protocol.json: the bundled sets and the original's system prompts (the Stage-1 one is the sft kernel's default). */
export function paperProtocol(): z.infer<typeof PaperProtocol> {
  return (protocol ??= PaperProtocol.parse(
    JSON.parse(readFileSync(path.join(EVAL_DATA_DIR, 'paper-protocol.json'), 'utf8')),
  ));
}

/** overwrite is not part of the cache key: it decides what happens to old results, not the new ones. */
export function evalCacheKey(e: RunConfig['eval']): Omit<RunConfig['eval'], 'overwrite'> {
  const { overwrite: _ignored, ...rest } = e;
  return rest;
}

/**
 * The sets of eval.benchmarks. A bundled name brings its file, count, digest and budgets; a file
 * of the user's named like a bundled set is expected to have that set's row count (unless
 * allowRowCountMismatch) and gets its budgets; explicit values win.
 */
export function resolveEvalSets(evalConfig: Pick<RunConfig['eval'], 'benchmarks'>): EvalSet[] {
  const bundled = paperProtocol().sets;
  return evalConfig.benchmarks.map((b) => {
    const known = isBundledSet(b.name) ? bundled[b.name] : undefined;
    const budget = {
      maxInputTokens: b.maxInputTokens ?? known?.maxInputTokens ?? DEFAULT_BUDGET.maxInputTokens,
      maxNewTokens: b.maxNewTokens ?? known?.maxNewTokens ?? DEFAULT_BUDGET.maxNewTokens,
      limit: b.limit ?? null,
    };
    if (b.path === undefined) {
      if (!known) throw new Error(`eval.benchmarks: '${b.name}' is not a bundled set`); // the config schema refuses it first
      return {
        name: b.name,
        path: path.join(EVAL_DATA_DIR, known.file),
        format: 'json',
        expectedRows: known.rows,
        sha256: known.sha256,
        ...budget,
      };
    }
    const format = b.format ?? (/\.jsonl$/i.test(b.path) ? 'jsonl' : 'json');
    const expectedRows = b.allowRowCountMismatch ? null : (b.expectedRows ?? known?.rows ?? null);
    return { name: b.name, path: path.resolve(b.path), format, expectedRows, sha256: null, ...budget };
  });
}

/** The sets and what identifies their content for the cache key (a bundled set: its digest). */
export async function resolveEvalDatasets(
  evalConfig: RunConfig['eval'],
  runDir: string,
): Promise<{ datasets: EvalSet[]; dataKeys: string[] }> {
  const datasets = resolveEvalSets(evalConfig);
  const dataKeys = await Promise.all(
    datasets.map((d, i) =>
      d.sha256
        ? Promise.resolve(`bundled:${d.name}:${d.sha256}`)
        : digestTextInput(runDir, d.path, `eval.benchmarks[${i}].path`),
    ),
  );
  return { datasets, dataKeys };
}

/**
 * Every row of every set validated, at the start of the step's produce (not on a cache hit): a
 * malformed set fails there, not after the first of three models has been loaded.
 */
export async function validateEvalDatasets(datasets: EvalSet[]): Promise<void> {
  for (const d of datasets) await loadEvalRows(d);
}

/**
 * Step 7 is re-running (its inputs changed) over the published results of an earlier run: unless
 * eval.overwrite, they are renamed to results.previous-<UTC time> beside it instead of being
 * replaced. Returns the new name, or undefined when there was nothing to keep.
 */
export async function keepPreviousResults(
  runDir: string,
  overwrite: boolean,
  now = new Date(),
): Promise<string | undefined> {
  const results = path.join(runDir, A.RESULTS_DIR);
  if (overwrite || !existsSync(results)) return undefined;
  const aside = `${results}.previous-${now.toISOString().replace(/[:.]/g, '-')}`;
  await fsp.rename(results, aside);
  return aside;
}
