/**
 * The GPU steps (0, 1, 2, 5b, 7): each builds a kernel job from the run config, runs it through
 * the kernel bridge under the artifact store, and reports progress as heartbeats.
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import * as A from '../pipeline/artifacts';
import type { RunConfig } from '../pipeline/config';
import type { StepInput, StepProgress, StepResult } from '../pipeline/steps';
import { stepRow } from '../pipeline/steps';
import { runKernel, type KernelOutcome } from './kernelBridge';
import type { KernelJob, KernelVerb } from '../pipeline/kernelJobs';
import { runStep } from './store/artifactStore';
import { digestPath } from './store/digest';
import { kernelEnv, type DeviceSet } from '../workers/deviceSet';
import { resolveRun, type ResolvedRun } from './runPaths';
import { exportOnnxStep } from './onnx/exportStep';

export interface GpuWorkerContext {
  devices: DeviceSet;
  /** Serialises GPU activities of one worker across its task queues: one kernel owns the devices at a time. */
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  /** CPU threads per kernel (torch.set_num_threads); unset = torch's default (all cores). */
  threads?: number;
}

/** Kernel code version; part of every GPU step's cache key so a kernel change re-runs its steps. */
export const KERNEL_VERSION = '0.1.0';

function durationMs(text: string): number {
  const value = Number(text.slice(0, -1));
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[text.slice(-1) as 's' | 'm' | 'h' | 'd'];
  return value * unit;
}

function heartbeat(details: unknown): void {
  try {
    Context.current().heartbeat(details);
  } catch {
    // not inside an activity (direct calls in tests)
  }
}

function cancelledSignal(): Promise<never> | undefined {
  try {
    return Context.current().cancelled;
  } catch {
    return undefined;
  }
}

function device(config: RunConfig, devices: DeviceSet): 'cpu' | 'cuda' {
  if (devices.kind === 'cpu' || config.device === 'cpu') return 'cpu';
  return 'cuda';
}

/** Stall limit: the step table's, unless WMSS_STALL_SECONDS overrides it (tests of hang detection). */
function stallMs(input: StepInput): number {
  const override = Number(process.env.WMSS_STALL_SECONDS);
  return override > 0 ? override * 1000 : durationMs(stepRow(input.stepId).timeouts.stall);
}

export function kernelSteps(ctx: GpuWorkerContext) {
  async function kernel<V extends KernelVerb>(input: StepInput, run: ResolvedRun, verb: V, job: Omit<KernelJob<V>, 'log_file' | 'device' | 'seed'> & { seed?: number }): Promise<KernelOutcome> {
    const attempt = safeAttempt();
    const full = {
      ...job,
      log_file: path.join(run.runDir, A.LOGS_DIR, `${input.stepId}.log`),
      device: device(input.config, ctx.devices),
      seed: job.seed ?? 42,
      threads: ctx.threads ?? null,
    } as KernelJob<V>;
    return ctx.exclusive(() =>
      runKernel(verb, full, {
        jobFile: path.join(run.runDir, A.JOBS_DIR, `${input.stepId}.attempt-${attempt}.json`),
        env: kernelEnv(ctx.devices),
        stallMs: stallMs(input),
        onHeartbeat: (p: StepProgress) => heartbeat(p),
        cancelled: cancelledSignal(),
      }),
    );
  }

  const relative = (run: ResolvedRun, p: string) => path.relative(run.runDir, p).split(path.sep).join('/');

  return {
    /** ONNX export for the onnx backend (steps onnxBase, onnxM1, onnxWmss): activities/onnx/exportStep.ts. */
    async exportOnnx(input: StepInput): Promise<StepResult> {
      const run = resolveRun(input.config);
      return exportOnnxStep(input, run, (job) => kernel(input, run, 'export-onnx', job));
    },

    async computeEntropy(input: StepInput): Promise<StepResult> {
      const run = resolveRun(input.config);
      const { config } = input;
      const base = input.stepId === 'entropy0';
      const modelPath = base ? run.baseModel : path.join(run.runDir, input.deps.sft!.outputs.checkpoint);
      const modelKey = base ? await digestPath(run.runDir, run.baseModel) : input.deps.sft!.cacheKey;
      return runStep(input, {
        cacheKey: { kernel: KERNEL_VERSION, entropy: config.entropy, dataFormat: config.dataFormat, model: modelKey, data: await digestPath(run.runDir, run.dataFile) },
        outputs: { entropy: base ? A.ENTROPY_0 : A.ENTROPY_1 },
        mode: 'atomic',
        heartbeat,
        produce: async ({ paths }) => {
          const out = await kernel(input, run, 'entropy', {
            model_path: modelPath,
            data_file: run.dataFile,
            data_format: config.dataFormat,
            output_path: paths.entropy,
            field: base ? 'entropy_0' : 'entropy_1',
            definition: config.entropy.definition,
            max_length: config.entropy.maxLength,
            batch_tokens: config.entropy.batchTokens,
            vocab_chunk: config.entropy.vocabChunk,
          });
          return { metrics: out.metrics };
        },
      });
    },

    async trainSft(input: StepInput): Promise<StepResult> {
      const run = resolveRun(input.config);
      const { sft } = input.config;
      return runStep(input, {
        cacheKey: { kernel: KERNEL_VERSION, sft, dataFormat: input.config.dataFormat, model: await digestPath(run.runDir, run.baseModel), data: await digestPath(run.runDir, run.dataFile) },
        outputs: { dir: A.STAGE1_DIR },
        mode: 'in-place',
        heartbeat,
        produce: async ({ paths }) => {
          const out = await kernel(input, run, 'sft', {
            ...trainingJob(sft, run, input.config.dataFormat, paths.dir),
            model_path: run.baseModel,
            system_prompt: sft.systemPrompt ?? null,
          });
          return { metrics: out.metrics, outputs: { checkpoint: relative(run, out.outputs.checkpoint) } };
        },
      });
    },

    async trainJoint(input: StepInput): Promise<StepResult> {
      const run = resolveRun(input.config);
      const { joint } = input.config;
      return runStep(input, {
        cacheKey: { kernel: KERNEL_VERSION, joint, dataFormat: input.config.dataFormat, fused: input.deps.fuse!.cacheKey, resample: input.deps.merge!.cacheKey, data: await digestPath(run.runDir, run.dataFile) },
        outputs: { dir: A.stage3Dir(input.config) },
        mode: 'in-place',
        heartbeat,
        produce: async ({ paths }) => {
          const out = await kernel(input, run, 'joint', {
            ...trainingJob(joint, run, input.config.dataFormat, paths.dir),
            fused_dir: path.join(run.runDir, input.deps.fuse!.outputs.fused),
            indices_file: path.join(run.runDir, input.deps.merge!.outputs.positions),
            fusion_lambda: joint.fusionLambda,
            freeze_weak: joint.freezeWeak,
            loss_on: joint.lossOn,
          });
          return { metrics: out.metrics, outputs: { checkpoint: relative(run, out.outputs.checkpoint) } };
        },
      });
    },

    async evaluate(input: StepInput): Promise<StepResult> {
      const run = resolveRun(input.config);
      const { eval: evalConfig } = input.config;
      const models: { label: string; path: string; key: string }[] = [
        { label: 'wmss', path: path.join(run.runDir, input.deps.extract!.outputs.model), key: input.deps.extract!.cacheKey },
      ];
      if (evalConfig.baselines) {
        models.push({ label: 'base', path: path.join(run.runDir, input.deps.snapshot!.outputs.model), key: input.deps.snapshot!.cacheKey });
        models.push({ label: 'm1', path: path.join(run.runDir, input.deps.sft!.outputs.checkpoint), key: input.deps.sft!.cacheKey });
      }
      const datasets = evalConfig.datasets.map((d) => ({
        name: d.name,
        path: d.path.startsWith('bundled:') ? d.path : path.resolve(d.path),
        format: d.format,
        expected_rows: d.expectedRows ?? null,
        max_input_tokens: d.maxInputTokens,
        max_new_tokens: d.maxNewTokens,
        limit: d.limit ?? null,
      }));
      const dataKeys = await Promise.all(datasets.map((d) => (d.path.startsWith('bundled:') ? d.path : digestPath(run.runDir, d.path))));
      return runStep(input, {
        cacheKey: { kernel: KERNEL_VERSION, eval: evalConfig, models: models.map((m) => [m.label, m.key]), data: dataKeys },
        outputs: { results: A.RESULTS_DIR },
        mode: 'atomic',
        heartbeat,
        produce: async ({ paths }) => {
          const metrics: Record<string, number | string> = {};
          for (const model of models) {
            const out = await kernel(input, run, 'evaluate', {
              model_path: model.path,
              label: model.label,
              output_dir: path.join(paths.results, model.label),
              datasets,
              batch_size: evalConfig.batchSize,
              system_prompt: evalConfig.systemPrompt ?? null,
              enable_thinking: evalConfig.enableThinking,
            });
            for (const [key, value] of Object.entries(out.metrics)) {
              // "pass_at_1/gsm8k" → "pass_at_1/wmss/gsm8k"
              const [metric, ...rest] = key.split('/');
              metrics[rest.length ? `${metric}/${model.label}/${rest.join('/')}` : `${key}/${model.label}`] = value;
            }
          }
          return { metrics };
        },
      });
    },
  };
}

function trainingJob(t: RunConfig['sft'] | RunConfig['joint'], run: ResolvedRun, dataFormat: RunConfig['dataFormat'], outputDir: string) {
  return {
    data_file: run.dataFile,
    data_format: dataFormat,
    output_dir: outputDir,
    max_length: t.maxLength,
    lr: t.lr,
    warmup_ratio: t.warmupRatio,
    weight_decay: t.weightDecay,
    max_grad_norm: t.maxGradNorm,
    epochs: t.epochs,
    micro_batch: t.microBatch,
    grad_accum: t.gradAccum,
    max_steps: t.maxSteps ?? null,
    save_every: t.saveEvery,
    gradient_checkpointing: t.gradientCheckpointing,
    dtype: t.dtype,
    seed: t.seed,
  };
}

function safeAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1;
  }
}
