/**
 * Activity `computeEntropy` of steps 0 and 2 (torch backend): the entropy kernel on the base
 * model or m1, one kernel per GPU on a worker with several, merged in idx order.
 */
import { baseModelKey } from '../store/modelKey';
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import * as A from '../../pipeline/artifacts';
import { KERNEL_VERSION } from '../../pipeline/kernelJobs';
import type { StepInput, StepResult } from '../../pipeline/steps';
import { mergeJsonlByKey } from '../deviceShards';
import { heartbeat, type GpuRuntime } from '../gpuRuntime';
import type { KernelOutcome } from '../kernelBridge';
import { resolveRun } from '../runPaths';
import { checkModelDir } from './snapshotActivity';
import { runStep } from '../store/artifactStore';
import { digestTextInput } from '../store/digest';
import { ENTROPY_CONFIG_KEYS, entropyJob } from '../../pipeline/stepDefinitions/entropy';

export function computeEntropy(rt: GpuRuntime) {
  return async (input: StepInput): Promise<StepResult> => {
    const run = resolveRun(input.config);
    const { config } = input;
    const base = input.stepId === 'entropy0';
    const modelPath = base ? run.baseModel : path.join(run.runDir, input.deps.sft!.outputs.checkpoint);
    const modelKey = base ? await baseModelKey(run.runDir, run.baseModel, input) : input.deps.sft!.cacheKey;
    return runStep(input, {
      cacheKey: {
        kernel: KERNEL_VERSION,
        entropy: config.entropy,
        dataFormat: config.dataFormat,
        model: modelKey,
        data: await digestTextInput(run.runDir, run.dataFile, 'dataFile'),
      },
      outputs: { entropy: base ? A.ENTROPY_0 : A.ENTROPY_1 },
      mode: 'atomic',
      heartbeat,
      produce: async ({ paths }) => {
        // a malformed base model fails here as InvalidInput, not as a kernel crash retried 5 times
        if (base) await checkModelDir(run.baseModel);
        const job = entropyJob(config, {
          modelPath,
          dataFile: run.dataFile,
          outputPath: paths.entropy,
          field: base ? 'entropy_0' : 'entropy_1',
        });
        const configKeys = base ? { ...ENTROPY_CONFIG_KEYS, model_path: 'baseModel' } : ENTROPY_CONFIG_KEYS;
        if (rt.devices === 1) return { metrics: (await rt.kernel(input, run, 'entropy', job, { configKeys })).metrics };
        const shardFile = (i: number, n: number) => `${paths.entropy}.shard-${i}-of-${n}`;
        const outs = await rt.sharded(
          input,
          run,
          'entropy',
          (shard) => ({ ...job, output_path: shardFile(shard.index, shard.count), shard }),
          configKeys,
        );
        const files = outs.map((_, i) => shardFile(i, outs.length));
        await mergeJsonlByKey(files, 'idx', paths.entropy);
        await Promise.all(files.map((f) => fsp.rm(f, { force: true })));
        return { metrics: entropyMetrics(outs) };
      },
    });
  };
}

/** The entropy metrics of N shards as the kernel reports them for one. */
function entropyMetrics(outs: KernelOutcome[]): Record<string, number> {
  const num = (o: KernelOutcome, k: string) => Number(o.metrics[k] ?? 0);
  const samples = outs.reduce((s, o) => s + num(o, 'samples'), 0);
  const sum = (k: string) => outs.reduce((s, o) => s + num(o, k), 0);
  return {
    samples,
    tokens: sum('tokens'),
    scored_tokens: sum('scored_tokens'),
    tokens_per_s: sum('tokens_per_s'),
    mean_entropy: samples ? outs.reduce((s, o) => s + num(o, 'mean_entropy') * num(o, 'samples'), 0) / samples : 0,
    shards: outs.length,
  };
}
