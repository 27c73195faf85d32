/**
 * The onnx backend's activities (steps 0, 2 and 7 when `entropy.backend` / `eval.backend` is
 * onnx), served by an onnx worker on the onnx queue. They run onnxruntime-node in the worker
 * process, read the export-onnx outputs of the onnxBase / onnxM1 / onnxWmss steps, and never
 * start a Python process (this module does not import the kernel bridge).
 */
import os from 'node:os';
import path from 'node:path';
import * as A from '../../pipeline/artifacts';
import type { StepInput, StepProgress, StepResult } from '../../pipeline/steps';
import { resolveRun } from '../runPaths';
import { evalCacheKey, keepPreviousResults, resolveEvalDatasets, validateEvalDatasets } from '../evalDatasets';
import { runStep } from '../store/artifactStore';
import { digestTextInput } from '../store/digest';
import { invalidInput } from '../store/failures';
import { activityCancelled, activityHeartbeat } from '../store/heartbeat';
import { computeEntropyOnnx, evaluateOnnx, type Progress } from './compute';
import { readRecords } from './data';
import { OnnxCausalLm } from './model';
import { loadChatTokenizer } from './tokenizer';

/** Version of the onnx backend's computations; part of its steps' cache keys. */
export const ONNX_BACKEND_VERSION = '0.1.0';

export interface OnnxWorkerContext {
  /** onnxruntime intra-op threads: this worker's share of the cores. */
  threads?: number;
}

export function defaultOnnxThreads(): number {
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

/** Throws the cancellation once the activity has been cancelled (checked between batches). */
function stopCheck(): () => void {
  let reason: unknown;
  activityCancelled()?.catch((err) => {
    reason = err;
  });
  return () => {
    if (reason !== undefined) throw reason as Error; // a CancelledFailure
  };
}

function progressTo(beat: (details: unknown) => void, unit: string): Progress {
  return (done, total, extra) => {
    const p: StepProgress = { done, total, unit, tokensPerS: extra?.tokensPerS, updatedAt: new Date().toISOString() };
    beat(p);
  };
}

function onnxDirOf(
  input: StepInput,
  dep: 'onnxBase' | 'onnxM1' | 'onnxWmss',
  runDir: string,
): { dir: string; key: string } {
  const result = input.deps[dep];
  if (!result)
    throw invalidInput(
      path.join(runDir, A.MANIFESTS_DIR),
      undefined,
      dep,
      `step ${input.stepId} runs on the onnx backend but has no result of ${dep} (the ONNX export)`,
    );
  return { dir: path.join(runDir, result.outputs.onnx), key: result.cacheKey };
}

export function onnxSteps(ctx: OnnxWorkerContext = {}) {
  const threads = ctx.threads ?? defaultOnnxThreads();
  return {
    async computeEntropy(input: StepInput): Promise<StepResult> {
      const run = resolveRun(input.config);
      const { config } = input;
      const base = input.stepId === 'entropy0';
      const onnx = onnxDirOf(input, base ? 'onnxBase' : 'onnxM1', run.runDir);
      return runStep(input, {
        cacheKey: {
          backend: 'onnx',
          onnx: ONNX_BACKEND_VERSION,
          entropy: config.entropy,
          dataFormat: config.dataFormat,
          model: onnx.key,
          data: await digestTextInput(run.runDir, run.dataFile, 'dataFile'),
        },
        outputs: { entropy: base ? A.ENTROPY_0 : A.ENTROPY_1 },
        mode: 'atomic',
        heartbeat: activityHeartbeat,
        produce: async ({ paths, heartbeat: beat }) => {
          // a malformed data file fails before the model is loaded
          const records = await readRecords(run.dataFile, config.dataFormat);
          const model = OnnxCausalLm.open(onnx.dir, threads);
          await model.check(['no_cache']);
          const metrics = await computeEntropyOnnx(model, loadChatTokenizer(onnx.dir), {
            dataFile: run.dataFile,
            dataFormat: config.dataFormat,
            records,
            outputPath: paths.entropy,
            field: base ? 'entropy_0' : 'entropy_1',
            definition: config.entropy.definition,
            maxLength: config.entropy.maxLength,
            batchTokens: config.entropy.batchTokens,
            progress: progressTo(beat, 'samples'),
            stop: stopCheck(),
          });
          return { metrics: { ...metrics, backend: 'onnx' } };
        },
      });
    },

    async evaluate(input: StepInput): Promise<StepResult> {
      const run = resolveRun(input.config);
      const { eval: evalConfig } = input.config;
      const models = [{ label: 'wmss', ...onnxDirOf(input, 'onnxWmss', run.runDir) }];
      if (evalConfig.baselines) {
        models.push({ label: 'base', ...onnxDirOf(input, 'onnxBase', run.runDir) });
        models.push({ label: 'm1', ...onnxDirOf(input, 'onnxM1', run.runDir) });
      }
      const resolved = await resolveEvalDatasets(evalConfig, run.runDir);
      const dataKeys = resolved.dataKeys;
      const datasets = resolved.datasets;
      return runStep(input, {
        cacheKey: {
          backend: 'onnx',
          onnx: ONNX_BACKEND_VERSION,
          eval: evalCacheKey(evalConfig),
          models: models.map((m) => [m.label, m.key]),
          data: dataKeys,
        },
        outputs: { results: A.RESULTS_DIR },
        mode: 'atomic',
        heartbeat: activityHeartbeat,
        produce: async ({ paths, heartbeat: beat }) => {
          await validateEvalDatasets(resolved.datasets);
          await keepPreviousResults(run.runDir, evalConfig.overwrite);
          const metrics: Record<string, number | string> = { backend: 'onnx' };
          const stop = stopCheck();
          for (const m of models) {
            const model = OnnxCausalLm.open(m.dir, threads);
            await model.check(['with_past']);
            const out = await evaluateOnnx(model, loadChatTokenizer(m.dir), {
              label: m.label,
              outputDir: path.join(paths.results, m.label),
              datasets,
              batchSize: evalConfig.batchSize,
              systemPrompt: evalConfig.systemPrompt,
              enableThinking: evalConfig.enableThinking ?? true,
              progress: progressTo(beat, 'samples'),
              stop,
            });
            for (const [key, value] of Object.entries(out.metrics)) {
              // "pass_at_1/gsm8k" → "pass_at_1/wmss/gsm8k", as the torch backend reports
              const [metric, ...rest] = key.split('/');
              metrics[rest.length ? `${metric}/${m.label}/${rest.join('/')}` : `${key}/${m.label}`] = value;
            }
          }
          return { metrics };
        },
      });
    },
  };
}
