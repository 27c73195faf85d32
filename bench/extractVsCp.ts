/**
 * Step 6 throughput on a ~1 GiB synthetic fused checkpoint: extraction (keep dtype: half the file
 * streamed into a new safetensors file; and bf16 → f32) against `cp` of the whole fused file.
 * Run: npx tsc -p . && node dist/bench/extractVsCp.js [MiB per branch]   → bench/results/extract.json
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { extractSubmodelDir } from '../activities/stepActivities/extractActivity';
import { encodeHeader } from '../activities/store/safetensorsWriter';
import type { TensorInfo } from '../activities/store/safetensors';
import { runBench, writeBenchResult } from '../testkit/benchResult';

const TENSOR_MIB = 16;

async function writeFusedCheckpoint(dir: string, mibPerBranch: number): Promise<number> {
  const perTensor = TENSOR_MIB << 20;
  const count = Math.max(1, Math.round(mibPerBranch / TENSOR_MIB));
  const entries: [string, TensorInfo][] = [];
  let offset = 0;
  for (const branch of [0, 1]) {
    for (let i = 0; i < count; i++) {
      entries.push([
        `sub_models.${branch}.model.layers.${i}.mlp.up_proj.weight`,
        { dtype: 'BF16', shape: [perTensor / 2 / 4096, 4096], data_offsets: [offset, offset + perTensor] },
      ]);
      offset += perTensor;
    }
  }
  const file = path.join(dir, 'model.safetensors');
  const handle = await fsp.open(file, 'w');
  await handle.write(encodeHeader(entries, { format: 'pt' }));
  const block = Buffer.alloc(perTensor);
  for (let i = 0; i < block.length; i += 2) block.writeUInt16LE(0x3f80 + ((i >> 1) % 97), i); // bf16 values near 1
  for (let i = 0; i < entries.length; i++) await handle.write(block);
  await handle.close();
  writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({
      model_type: 'qwen3',
      num_sub_models: 2,
      sub_model_cfgs: [{ model_type: 'qwen3' }, { model_type: 'qwen3', eos_token_id: 2 }],
    }),
  );
  writeFileSync(path.join(dir, 'tokenizer.json'), '{}');
  return (await fsp.stat(file)).size;
}

/** Seconds of `fn` including the flush to disk (page-cache timings alone swing 10× between runs). */
async function timedWithSync(fn: () => Promise<unknown>): Promise<number> {
  spawnSync('sync');
  const t = performance.now();
  await fn();
  spawnSync('sync');
  return (performance.now() - t) / 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const REPEATS = 3;

async function main(): Promise<void> {
  const mibPerBranch = Number(process.argv[2] ?? 512);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-bench-extract-'));
  try {
    const fused = path.join(dir, 'fused');
    mkdirSync(fused);
    const fusedBytes = await writeFusedCheckpoint(fused, mibPerBranch);
    const cpRuns: number[] = [];
    const keepRuns: number[] = [];
    const castRuns: number[] = [];
    let keep: Record<string, number | string> = {};
    let cast: Record<string, number | string> = {};
    for (let r = 0; r < REPEATS; r++) {
      cpRuns.push(
        await timedWithSync(async () => {
          const cp = spawnSync('cp', [path.join(fused, 'model.safetensors'), path.join(dir, 'copy.safetensors')]);
          if (cp.status !== 0) throw new Error(`cp failed: ${cp.stderr.toString()}`);
        }),
      );
      keepRuns.push(
        await timedWithSync(async () => (keep = await extractSubmodelDir(fused, path.join(dir, 'keep'), 1, 'keep'))),
      );
      castRuns.push(
        await timedWithSync(async () => (cast = await extractSubmodelDir(fused, path.join(dir, 'f32'), 1, 'float32'))),
      );
      for (const p of ['copy.safetensors', 'keep', 'f32'])
        await fsp.rm(path.join(dir, p), { recursive: true, force: true });
    }
    const [cpSeconds, keepSeconds, castSeconds] = [median(cpRuns), median(keepRuns), median(castRuns)];

    const mibps = (bytes: number, s: number) => bytes / 2 ** 20 / s;
    const result = {
      fusedBytes,
      cpMiBps: mibps(fusedBytes, cpSeconds),
      extractKeepMiBps: mibps(Number(keep.bytes), keepSeconds),
      extractCastBf16ToF32MiBpsWritten: mibps(Number(cast.bytes), castSeconds),
      ratioExtractOverCp: mibps(Number(keep.bytes), keepSeconds) / mibps(fusedBytes, cpSeconds),
      cpus: os.cpus().length,
      at: new Date().toISOString(),
    };
    console.log(`fused file: ${(fusedBytes / 2 ** 20).toFixed(0)} MiB`);
    console.log(
      `cp of the fused file (+ sync, median of ${REPEATS}): ${result.cpMiBps.toFixed(0)} MiB/s (${cpSeconds.toFixed(2)} s)`,
    );
    console.log(
      `extract, keep dtype: ${result.extractKeepMiBps.toFixed(0)} MiB/s (${keepSeconds.toFixed(2)} s for ${(Number(keep.bytes) / 2 ** 20).toFixed(0)} MiB)`,
    );
    console.log(
      `extract, bf16 -> f32: ${result.extractCastBf16ToF32MiBpsWritten.toFixed(0)} MiB/s written (${castSeconds.toFixed(2)} s)`,
    );
    console.log(`ratio extract/cp throughput: ${result.ratioExtractOverCp.toFixed(3)}`);
    writeBenchResult('extract', result);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

runBench(main);
