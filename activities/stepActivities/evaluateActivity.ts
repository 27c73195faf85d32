/**
 * Activity `evaluate` of step 7 (torch backend): the evaluate kernel on the extracted model, and
 * on the base model and m1 with eval.baselines, and on step 5c's continued SFT of m1 when it ran; one kernel per GPU on a worker with several,
 * merged into one output dir by the kernel (merge_shards) as one run would have written it.
 * The results of an earlier run are kept aside unless eval.overwrite (docs/evaluation.md#outputs).
 */
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import * as A from '../../pipeline/artifacts';
import { KERNEL_VERSION } from '../../pipeline/kernelJobs';
import type { StepInput, StepResult } from '../../pipeline/steps';
import { evalCacheKey, keepPreviousResults, resolveEvalDatasets, validateEvalDatasets } from '../evalDatasets';
import { heartbeat, type GpuRuntime, type JobOf } from '../gpuRuntime';
import type { KernelOutcome } from '../kernelBridge';
import type { ResolvedRun } from '../runPaths';
import { resolveRun } from '../runPaths';
import { runStep } from '../store/artifactStore';
import { EVAL_CONFIG_KEYS, evaluateJob } from '../../pipeline/stepDefinitions/evaluate';
import { CONTINUED_SFT_LABEL } from '../../pipeline/stepDefinitions/continuedSft';

/**
 * evaluate on N shards, then the kernel's merge_shards (no model loaded) writes the job's
 * output_dir as one run would have: the per-set files are summarised in one place, Python.
 */
async function evaluateSharded(
  rt: GpuRuntime,
  input: StepInput,
  run: ResolvedRun,
  job: JobOf<'evaluate'>,
): Promise<KernelOutcome> {
  const shardDir = (i: number, n: number) => `${job.output_dir}.shard-${i}-of-${n}`;
  const outs = await rt.sharded(
    input,
    run,
    'evaluate',
    (shard) => ({ ...job, output_dir: shardDir(shard.index, shard.count), shard }),
    EVAL_CONFIG_KEYS,
  );
  const dirs = outs.map((_, i) => shardDir(i, outs.length));
  const merged = await rt.kernel(
    input,
    run,
    'evaluate',
    { ...job, merge_shards: dirs },
    { configKeys: EVAL_CONFIG_KEYS, tag: 'merge' },
  );
  await Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true })));
  const tokensPerS = outs.reduce((s, o) => s + Number(o.metrics.tokens_per_s ?? 0), 0);
  return { outputs: merged.outputs, metrics: { ...merged.metrics, tokens_per_s: tokensPerS, shards: outs.length } };
}

export function evaluate(rt: GpuRuntime) {
  return async (input: StepInput): Promise<StepResult> => {
    const run = resolveRun(input.config);
    const { eval: evalConfig } = input.config;
    const models: { label: string; path: string; key: string }[] = [
      {
        label: 'wmss',
        path: path.join(run.runDir, input.deps.extract!.outputs.model),
        key: input.deps.extract!.cacheKey,
      },
    ];
    if (evalConfig.baselines) {
      models.push({
        label: 'base',
        path: path.join(run.runDir, input.deps.snapshot!.outputs.model),
        key: input.deps.snapshot!.cacheKey,
      });
      models.push({
        label: 'm1',
        path: path.join(run.runDir, input.deps.sft!.outputs.checkpoint),
        key: input.deps.sft!.cacheKey,
      });
    }
    const continued = input.deps.continuedSft;
    // the baseline arm (step 5c, baseline.sft): beside WMSS whatever eval.baselines says
    if (continued)
      models.push({
        label: CONTINUED_SFT_LABEL,
        path: path.join(run.runDir, continued.outputs.checkpoint),
        key: continued.cacheKey,
      });
    const resolved = await resolveEvalDatasets(evalConfig, run.runDir);
    return runStep(input, {
      cacheKey: {
        kernel: KERNEL_VERSION,
        eval: evalCacheKey(evalConfig),
        models: models.map((m) => [m.label, m.key]),
        data: resolved.dataKeys,
      },
      outputs: { results: A.RESULTS_DIR },
      mode: 'atomic',
      heartbeat,
      produce: async ({ paths }) => {
        await validateEvalDatasets(resolved.datasets);
        await keepPreviousResults(run.runDir, evalConfig.overwrite);
        const metrics: Record<string, number | string> = {};
        for (const model of models) {
          const job = evaluateJob(evalConfig, resolved.datasets, {
            path: model.path,
            label: model.label,
            outputDir: path.join(paths.results, model.label),
          });
          const out =
            rt.devices === 1
              ? await rt.kernel(input, run, 'evaluate', job, { configKeys: EVAL_CONFIG_KEYS })
              : await evaluateSharded(rt, input, run, job);
          for (const [key, value] of Object.entries(out.metrics)) {
            // "pass_at_1/gsm8k" → "pass_at_1/wmss/gsm8k"
            const [metric, ...rest] = key.split('/');
            metrics[rest.length ? `${metric}/${model.label}/${rest.join('/')}` : `${key}/${model.label}`] = value;
          }
        }
        return { metrics };
      },
    });
  };
}
