/**
 * Step 3 at 1M rows: the TypeScript implementation against a NumPy one of the same formulas
 * (json per line, dict join, repo weights, rng.choice), on the same synthetic files.
 * Run: npx tsc -p . && node dist/bench/mergeVsNumpy.js [rows]   → bench/results/merge.json
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mergeAndWeight, mergeAndWeightFiles } from '../activities/stepActivities/mergeActivity';
import { AsciiWriter } from '../activities/store/asciiWriter';
import { Xoshiro128ss } from '../activities/weights/prng';
import * as A from '../pipeline/artifacts';
import { RunConfig } from '../pipeline/config';
import { REPO_ROOT } from '../activities/repoPaths';
import { runBench, writeBenchResult } from '../testkit/benchResult';

const NUMPY_SCRIPT = `
import json, sys, time
import numpy as np
e0_path, e1_path, data_path, out_dir = sys.argv[1:5]
t0 = time.perf_counter()
rows = {}
for path, field in ((e0_path, "entropy_0"), (e1_path, "entropy_1")):
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.setdefault(r["idx"], {})[field] = r[field]
idx = np.array(sorted(rows), dtype=np.int64)
h0 = np.array([rows[i]["entropy_0"] for i in idx.tolist()])
h1 = np.array([rows[i]["entropy_1"] for i in idx.tolist()])
d = h1 - h0
a, b, g = 0.1, 0.8, 0.1
z1 = h0.sum() or 1e-12
z2 = np.clip(-d, 0, None).sum() or 1e-12
z3 = np.clip(d, 0, None).sum() or 1e-12
p = a * h0 / z1 + b * np.clip(-d, 0, None) / z2 + g * np.clip(d, 0, None) / z3
p = np.clip(p, 0, None); p = p / p.sum()
p_by_idx = dict(zip(idx.tolist(), p.tolist()))
with open(data_path) as f:
    rec = [json.loads(l)["idx"] for l in f if l.strip()]
w = np.array([p_by_idx.get(i, 0.0) for i in rec]); w = w / w.sum()
pos = np.random.default_rng(42).choice(len(w), size=len(w), replace=True, p=w)
with open(out_dir + "/merged.jsonl", "w") as f:
    for i, x, y in zip(idx.tolist(), h0.tolist(), h1.tolist()):
        f.write(json.dumps({"idx": i, "entropy_0": x, "entropy_1": y}) + "\\n")
with open(out_dir + "/weights.jsonl", "w") as f:
    for i, x, y in zip(idx.tolist(), d.tolist(), p.tolist()):
        f.write(json.dumps({"idx": i, "delta_entropy": x, "weight": y}) + "\\n")
np.savetxt(out_dir + "/positions.txt", pos, fmt="%d")
print(json.dumps({"seconds": time.perf_counter() - t0, "unique": int(len(np.unique(pos)))}))
`;

async function writeSyntheticInputs(dir: string, rows: number): Promise<void> {
  mkdirSync(path.join(dir, A.ENTROPY_DIR), { recursive: true });
  const rng = new Xoshiro128ss(1);
  const e0 = await AsciiWriter.create(path.join(dir, A.ENTROPY_0));
  const e1 = await AsciiWriter.create(path.join(dir, A.ENTROPY_1));
  const data = await AsciiWriter.create(path.join(dir, 'train.jsonl'));
  for (let i = 0; i < rows; i++) {
    const h0 = rng.nextFloat() * 2;
    const h1 = Math.max(0, h0 + (rng.nextFloat() - 0.5) * 0.6);
    e0.text('{"idx": ').uint(i).text(', "entropy_0": ').num(h0).text('}\n');
    e1.text('{"idx": ').uint(i).text(', "entropy_1": ').num(h1).text('}\n');
    data
      .text('{"idx": ')
      .uint(i)
      .text(', "messages": [{"role": "user", "content": "What is ')
      .uint(i)
      .text(' + 1?"}, {"role": "assistant", "content": "<think>add</think> <answer>\\\\boxed{')
      .uint(i + 1)
      .text('}</answer>"}]}\n');
    for (const w of [e0, e1, data]) if (w.full) await w.flush();
  }
  await Promise.all([e0.close(), e1.close(), data.close()]);
}

async function main(): Promise<void> {
  const rows = Number(process.argv[2] ?? 1_000_000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-bench-merge-'));
  try {
    await writeSyntheticInputs(dir, rows);
    const config = RunConfig.parse({
      runName: 'bench',
      runDir: dir,
      baseModel: dir,
      dataFile: path.join(dir, 'train.jsonl'),
    });
    const out = (name: string) => path.join(dir, `core-${name}`);

    let t = performance.now();
    await mergeAndWeightFiles(
      {
        entropy0: path.join(dir, A.ENTROPY_0),
        entropy1: path.join(dir, A.ENTROPY_1),
        dataFile: config.dataFile,
        out: { merged: out('merged'), weights: out('weights'), positions: out('positions'), stats: out('stats') },
      },
      config,
    );
    const tsCore = (performance.now() - t) / 1000;

    t = performance.now();
    const step = await mergeAndWeight({ stepId: 'merge', config, deps: {} });
    const tsStep = (performance.now() - t) / 1000;

    mkdirSync(path.join(dir, 'numpy'));
    const py = spawnSync(
      path.join(REPO_ROOT, '.venv/bin/python'),
      [
        '-c',
        NUMPY_SCRIPT,
        path.join(dir, A.ENTROPY_0),
        path.join(dir, A.ENTROPY_1),
        config.dataFile,
        path.join(dir, 'numpy'),
      ],
      { encoding: 'utf8' },
    );
    if (py.status !== 0) throw new Error(`numpy baseline failed: ${py.stderr}`);
    const numpy = JSON.parse(py.stdout.trim().split('\n').pop()!) as { seconds: number; unique: number };

    const result = {
      rows,
      tsCoreSeconds: tsCore,
      tsStepSeconds: tsStep,
      numpySeconds: numpy.seconds,
      ratioTsOverNumpy: tsCore / numpy.seconds,
      tsUnique: step.metrics.unique,
      numpyUnique: numpy.unique,
      node: process.version,
      cpus: os.cpus().length,
      at: new Date().toISOString(),
    };
    console.log(`rows: ${rows}`);
    console.log(`ts merge+weights+resample (files in, files out): ${tsCore.toFixed(3)} s`);
    console.log(
      `ts step 3 under the artifact store (data digest, publish, output digests, manifest): ${tsStep.toFixed(3)} s`,
    );
    console.log(`numpy same formulas (json per line, dict join, rng.choice): ${numpy.seconds.toFixed(3)} s`);
    console.log(`ratio ts/numpy: ${result.ratioTsOverNumpy.toFixed(3)}`);
    writeBenchResult('merge', result);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

runBench(main);
