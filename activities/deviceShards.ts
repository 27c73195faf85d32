/**
 * Scoring steps on several devices: entropy (0, 2) and evaluate (7) run one kernel per device,
 * each on the items whose number mod N is its index (the kernels' `shard` job field), and the
 * shard outputs are merged back in idx / position order (entropy here, evaluate by the kernel's
 * merge_shards), so the merged files read like a single-device run's. Training steps do not
 * shard: they run under torchrun (kernelLaunch.ts).
 */
import { promises as fsp } from 'node:fs';
import type { StepProgress } from '../pipeline/steps';
import type { DeviceSet } from './deviceSet';

/** One environment per device: each shard sees exactly one GPU. */
export function shardEnvs(devices: DeviceSet): Record<string, string>[] {
  if (devices.kind === 'cpu') return [{ CUDA_VISIBLE_DEVICES: '', WMSS_DEVICE: 'cpu' }];
  return devices.ids.map((id) => ({ CUDA_VISIBLE_DEVICES: String(id), WMSS_DEVICE: 'cuda' }));
}

/** The progress of all shards as one: items done and total summed, throughput summed. */
export function sumProgress(parts: (StepProgress | undefined)[]): StepProgress {
  const known = parts.filter((p): p is StepProgress => p !== undefined);
  const speeds = known.map((p) => p.tokensPerS).filter((v): v is number => v !== undefined);
  return {
    done: known.reduce((s, p) => s + p.done, 0),
    total: known.reduce((s, p) => s + p.total, 0),
    unit: known[0]?.unit ?? 'samples',
    ...(speeds.length > 0 && { tokensPerS: speeds.reduce((s, v) => s + v, 0) }),
    // one line only: the first shard's, marked as such when there are several
    ...(known[0]?.detail !== undefined && {
      detail: known.length > 1 ? `${known[0].detail} (device 1 of ${known.length})` : known[0].detail,
    }),
    logFile: known[0]?.logFile,
    updatedAt: new Date().toISOString(),
  };
}

/**
 * Runs `n` shards side by side; the first failure stops the others (through their `cancelled`
 * promise, which the kernel bridge turns into SIGTERM) and is the error of the whole.
 */
export async function runShards<T>(
  n: number,
  activityCancelled: Promise<never> | undefined,
  run: (index: number, cancelled: Promise<never>) => Promise<T>,
): Promise<T[]> {
  let stopSiblings!: (err: unknown) => void;
  const siblingFailed = new Promise<never>((_, reject) => (stopSiblings = reject));
  siblingFailed.catch(() => undefined);
  const cancelled = activityCancelled ? Promise.race([activityCancelled, siblingFailed]) : siblingFailed;
  cancelled.catch(() => undefined);
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      run(i, cancelled).catch((err: unknown) => {
        stopSiblings(err);
        throw err;
      }),
    ),
  );
}

async function jsonLines(file: string): Promise<string[]> {
  return (await fsp.readFile(file, 'utf8')).split('\n').filter((l) => l.trim() !== '');
}

/**
 * Concatenates JSONL files and orders the lines by the integer field `key`. The lines are kept
 * byte for byte (Python wrote them), so a merged file equals the single-device file.
 */
export async function mergeJsonlByKey(files: string[], key: string, out: string): Promise<number> {
  const rows: { k: number; line: string }[] = [];
  for (const file of files)
    for (const line of await jsonLines(file))
      rows.push({ k: Number((JSON.parse(line) as Record<string, unknown>)[key]), line });
  rows.sort((a, b) => a.k - b.k);
  await fsp.writeFile(out, rows.map((r) => `${r.line}\n`).join(''));
  return rows.length;
}
