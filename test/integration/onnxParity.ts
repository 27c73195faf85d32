/**
 * What onnx.test.ts compares against: reference values from the kernels' own code
 * (onnxReference.py), grader cases written from the grading rules (docs/method.md), and a
 * manifest rewritten to match a tampered graph (so that only onnxruntime can notice).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { KERNELS_DIR, VENV_BIN } from '../../activities/repoPaths';

/** Runs test/integration/onnxReference.py with the kernels' Python; returns its JSON answer. */
export function pythonReference(request: unknown): any {
  const proc = spawnSync(path.join(VENV_BIN, 'python'), [path.join(__dirname, 'onnxReference.py')], {
    input: JSON.stringify(request),
    env: { ...process.env, PYTHONPATH: KERNELS_DIR, OMP_NUM_THREADS: '1' },
    maxBuffer: 256 << 20,
    encoding: 'utf8',
  });
  if (proc.status !== 0) throw new Error(`onnxReference.py failed:\n${proc.stderr.slice(-3000)}`);
  return JSON.parse(proc.stdout);
}

/** Response, gold answer, question: the cases the TypeScript grader must judge as grading.grade does. */
export const GRADER_CASES: readonly [string, string, string][] = [
  ['<think>2 + 3 = 5</think> <answer>\\boxed{5}</answer>', '5', ''],
  ['The answer is 1,234.', '1234', ''],
  ['<answer>18.0</answer>', '18', ''],
  ['\\boxed{\\frac{3}{4}}', '0.75', ''],
  ['so $5 total', '5', ''],
  ['\\boxed{12\\%}', '12', ''],
  ['\\boxed{x = 5}', '5', ''],
  ['\\boxed{\\frac{1}{2}', '0.5', ''],
  ['nothing here', '7', ''],
  ['-.5 is it', '-0.5', ''],
  ['\\boxed{(B)}', 'B', '(A) 1 (B) 2 (C) 3'],
  ['The answer is (c).', 'C', '(A) 1 (B) 2 (C) 3'],
  ['\\boxed{3}', 'C', 'Pick one: (A) 1 (B) 2 (C) 3'],
  ['\\boxed{4}', 'C', '(A) 1 (B) 2 (C) 3'],
  ['\\boxed{\\text{(D)}}', 'D', ''],
  ['<answer>3/4</answer>', '3/4', ''],
  ['\\boxed{\\sqrt{2}}', '\\sqrt{2}', ''],
  ['\\boxed{1.}', '1', ''],
];

/** Rewrites the export's manifest.json so that its size and sha256 of `graph` match the file as it is now. */
export function updateManifest(dir: string, graph: 'no_cache' | 'with_past'): void {
  const file = path.join(dir, 'manifest.json');
  const m = JSON.parse(readFileSync(file, 'utf8'));
  const g = m.graphs[graph];
  g.size = statSync(path.join(dir, g.file)).size;
  g.sha256 = createHash('sha256')
    .update(readFileSync(path.join(dir, g.file)))
    .digest('hex');
  writeFileSync(file, JSON.stringify(m));
}
