/**
 * Step 7's datasets, shared by the torch and ONNX backends: paths made absolute, their digests for
 * the cache key, and (validateEvalDatasets) every row validated (onnx/data.ts, the same checks and
 * messages as the evaluate kernel's load_rows) before any model is loaded.
 */
import path from 'node:path';
import type { EvalDataset, RunConfig } from '../pipeline/config';
import { digestTextInput } from './store/digest';
import { loadEvalRows } from './onnx/data';

export async function resolveEvalDatasets(evalConfig: RunConfig['eval'], runDir: string): Promise<{ datasets: EvalDataset[]; dataKeys: string[] }> {
  const bundled = (p: string) => p.startsWith('bundled:');
  const datasets = evalConfig.datasets.map((d) => ({ ...d, path: bundled(d.path) ? d.path : path.resolve(d.path) }));
  // A bundled set is part of wmss-flow's own code: its name is its identity.
  const dataKeys = await Promise.all(datasets.map((d, i) => (bundled(d.path) ? d.path : digestTextInput(runDir, d.path, `eval.datasets[${i}].path`))));
  return { datasets, dataKeys };
}

/**
 * Every row of every set validated, at the start of the step's produce (not on a cache hit): a
 * malformed set fails there, not after the first of three models has been loaded.
 */
export async function validateEvalDatasets(datasets: EvalDataset[]): Promise<void> {
  for (const d of datasets) await loadEvalRows({ name: d.name, path: d.path, format: d.format, expectedRows: d.expectedRows ?? null, limit: d.limit ?? null });
}
