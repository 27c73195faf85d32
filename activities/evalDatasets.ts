/** Step 7's datasets, shared by the torch and ONNX backends: paths made absolute, and their digests for the cache key. */
import path from 'node:path';
import type { EvalDataset, RunConfig } from '../pipeline/config';
import { digestPath } from './store/digest';

export async function resolveEvalDatasets(evalConfig: RunConfig['eval'], runDir: string): Promise<{ datasets: EvalDataset[]; dataKeys: string[] }> {
  const bundled = (p: string) => p.startsWith('bundled:');
  const datasets = evalConfig.datasets.map((d) => ({ ...d, path: bundled(d.path) ? d.path : path.resolve(d.path) }));
  // A bundled set is part of wmss-flow's own code: its name is its identity.
  const dataKeys = await Promise.all(datasets.map((d) => (bundled(d.path) ? d.path : digestPath(runDir, d.path))));
  return { datasets, dataKeys };
}
