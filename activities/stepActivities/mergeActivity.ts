/**
 * Step 3 `mergeAndWeight`: join the two entropy files on idx, weight every sample, and draw the
 * resampled training set for joint training (docs/method.md#sample-weights-step-3 and
 * #resampling-step-3). Pure file work on typed columns; the activity only wraps it in the
 * artifact store.
 */
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import type { RunConfig } from '../../pipeline/config';
import type { StepInput, StepResult } from '../../pipeline/steps';
import { runStep } from '../store/artifactStore';
import { digestTextInput } from '../store/digest';
import { invalidInput } from '../store/failures';
import { activityHeartbeat, progressDetails, throwIfCancelled, type Heartbeat } from '../store/heartbeat';
import { promises as fsp } from 'node:fs';
import { AsciiWriter } from '../store/asciiWriter';
import { forEachJsonl } from '../store/jsonl';
import { resolveRun } from '../runPaths';
import { Float64Column } from '../weights/columns';
import { sampleWeights } from '../weights/formulas';
import { mergeEntropies, readEntropyColumns, type MergedEntropies } from '../weights/joinEntropies';
import { dedupeKeepFirst, drawCount, drawStats, drawWithReplacement, recordWeights } from '../weights/resample';

/** Bumped when the outputs of step 3 change for the same inputs. */
export const MERGE_VERSION = 1;

export interface MergeFiles {
  entropy0: string;
  entropy1: string;
  dataFile: string;
  out: { merged: string; weights: string; positions: string; stats: string };
}

export type MergeSettings = Pick<RunConfig, 'dataFormat' | 'weighting' | 'resample'>;

/** The idx of every record of the data file, by position (0-based over non-blank lines). */
export async function readRecordIdx(dataFile: string, format: RunConfig['dataFormat']): Promise<Float64Array> {
  const idx = new Float64Column();
  await forEachJsonl(dataFile, (value, line) => {
    if (format === 'gsm8k') {
      idx.push(idx.length);
      return;
    }
    const v =
      value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>).idx : undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw invalidInput(
        dataFile,
        line,
        'idx',
        `every record needs a non-negative integer idx (got ${JSON.stringify(v) ?? 'nothing'})`,
      );
    }
    idx.push(v);
  });
  return idx.values();
}

/** Write `n` lines, each by `line(out, i)`, flushing once per MiB. */
async function writeLines(file: string, n: number, line: (out: AsciiWriter, i: number) => void): Promise<void> {
  const out = await AsciiWriter.create(file);
  try {
    for (let i = 0; i < n; i++) {
      line(out, i);
      if (out.full) await out.flush();
    }
  } finally {
    await out.close();
  }
}

/** `{"idx","entropy_0","entropy_1"}` sorted by idx, as the original's merge writes. */
function writeMerged(file: string, m: MergedEntropies): Promise<void> {
  return writeLines(file, m.idx.length, (out, i) =>
    out
      .text('{"idx":')
      .uint(m.idx[i])
      .text(',"entropy_0":')
      .num(m.h0[i])
      .text(',"entropy_1":')
      .num(m.h1[i])
      .text('}\n'),
  );
}

/** `{"idx","delta_entropy","weight"}` sorted by idx. */
function writeSampleWeights(file: string, m: MergedEntropies, p: Float64Array): Promise<void> {
  return writeLines(file, m.idx.length, (out, i) =>
    out
      .text('{"idx":')
      .uint(m.idx[i])
      .text(',"delta_entropy":')
      .num(m.h1[i] - m.h0[i])
      .text(',"weight":')
      .num(p[i])
      .text('}\n'),
  );
}

/** Everything step 3 does, on explicit files (the bench and tests call it directly). */
export async function mergeAndWeightFiles(
  files: MergeFiles,
  settings: MergeSettings,
  heartbeat: Heartbeat = () => undefined,
): Promise<Record<string, number | string>> {
  const phase = (name: string, done: number) => {
    // the phases between reads are in-memory loops over at most WMSS_MAX_RECORDS rows: seconds each
    throwIfCancelled();
    heartbeat({ ...progressDetails(done, 5, 'phases'), phase: name });
  };
  phase('read entropies', 0);
  const e0 = await readEntropyColumns(files.entropy0, 'entropy_0');
  const e1 = await readEntropyColumns(files.entropy1, 'entropy_1');
  // the entropy kernels write a row per record and a data file has at least one
  for (const e of [e0, e1])
    if (e.idx.length === 0) throw invalidInput(e.file, undefined, e.field, 'the entropy file has no rows');
  const merged = mergeEntropies(e0, e1);
  phase('weights', 1);
  const { p, uniformFallback: entropyUniform } = sampleWeights(merged.h0, merged.h1, settings.weighting);
  phase('read data file', 2);
  const recordIdx = await readRecordIdx(files.dataFile, settings.dataFormat);
  const records = recordWeights(recordIdx, merged.idx, p);
  phase('resample', 3);
  const n = recordIdx.length;
  const draws = drawCount(n, settings.resample.multiplier);
  const drawn =
    n > 0 && draws > 0 ? drawWithReplacement(records.weights, draws, settings.resample.seed) : new Uint32Array(0);
  const positions = settings.resample.dedupe ? dedupeKeepFirst(drawn, n) : drawn;

  phase('write', 4);
  let negative = 0;
  let zero = 0;
  let positive = 0;
  for (let i = 0; i < merged.idx.length; i++) {
    const d = merged.h1[i] - merged.h0[i];
    if (d < 0) negative++;
    else if (d > 0) positive++;
    else zero++;
  }

  const warnings: string[] = [];
  if (entropyUniform) warnings.push('every entropy-based weight was 0: weights are uniform over the merged rows');
  if (records.uniformFallback && n > 0) warnings.push('every record weight was 0: records are drawn uniformly');
  if (records.missingEntropy > 0)
    warnings.push(`${records.missingEntropy} records have no entropy row and get weight 0`);

  const ds = drawStats(records.weights, drawn);
  const stats = {
    formula: settings.weighting.formula,
    alpha: settings.weighting.alpha,
    beta: settings.weighting.beta,
    gamma: settings.weighting.gamma,
    seed: settings.resample.seed,
    prng: 'xoshiro128** (SplitMix64 seeding); not NumPy default_rng',
    multiplier: settings.resample.multiplier,
    dedupe: settings.resample.dedupe,
    n,
    entropyRows: merged.idx.length,
    ...ds,
    written: positions.length,
    deltaEntropy: { negative, zero, positive },
    missingEntropy: records.missingEntropy,
    entropyWithoutRecord: records.entropyWithoutRecord,
    warnings,
  };

  await Promise.all([
    writeMerged(files.out.merged, merged),
    writeSampleWeights(files.out.weights, merged, p),
    writeLines(files.out.positions, positions.length, (out, i) => out.uint(positions[i]).text('\n')),
    fsp.writeFile(files.out.stats, `${JSON.stringify(stats, null, 2)}\n`),
  ]);

  return {
    records: n,
    entropyRows: merged.idx.length,
    draws: ds.draws,
    written: positions.length,
    unique: ds.unique,
    effectiveSampleSize: Math.round(ds.effectiveSampleSize),
    missingEntropy: records.missingEntropy,
    warnings: warnings.length,
  };
}

/** Activity of step 3. */
export async function mergeAndWeight(input: StepInput): Promise<StepResult> {
  const run = resolveRun(input.config);
  const { config } = input;
  const entropyPath = (dep: 'entropy0' | 'entropy1', fallback: string) =>
    path.join(run.runDir, input.deps[dep]?.outputs.entropy ?? fallback);
  const settings: MergeSettings = {
    dataFormat: config.dataFormat,
    weighting: config.weighting,
    resample: config.resample,
  };
  return runStep(input, {
    cacheKey: {
      version: MERGE_VERSION,
      ...settings,
      data: await digestTextInput(run.runDir, run.dataFile, 'dataFile'),
    },
    outputs: {
      merged: A.ENTROPY_MERGED,
      weights: A.SAMPLE_WEIGHTS,
      positions: A.RESAMPLED_POSITIONS,
      stats: A.RESAMPLE_STATS,
    },
    mode: 'atomic',
    heartbeat: activityHeartbeat,
    produce: async ({ paths, heartbeat }) => ({
      metrics: await mergeAndWeightFiles(
        {
          entropy0: entropyPath('entropy0', A.ENTROPY_0),
          entropy1: entropyPath('entropy1', A.ENTROPY_1),
          dataFile: run.dataFile,
          out: { merged: paths.merged, weights: paths.weights, positions: paths.positions, stats: paths.stats },
        },
        settings,
        heartbeat,
      ),
    }),
  });
}
