/**
 * The GPU steps (0, 1, 2, 5b, 7): each builds a kernel job from the run config, runs it through
 * the kernel bridge under the artifact store, and reports progress as heartbeats.
 * On a worker owning N > 1 GPUs, training runs under torchrun with N ranks and the scoring steps
 * run N shards, one per GPU, merged in idx order (activities/deviceShards.ts).
 */
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { promises as fsp } from 'node:fs';
import { ErrorTypes } from '../pipeline/errors';
import { mergeJsonlByKey, runShards, shardEnvs, sumProgress } from './deviceShards';
import * as A from '../pipeline/artifacts';
import type { RunConfig } from '../pipeline/config';
import type { StepInput, StepProgress, StepResult } from '../pipeline/steps';
import { stepRow } from '../pipeline/steps';
import { runKernel, type KernelOutcome } from './kernelBridge';
import type { KernelJob, KernelVerb } from '../pipeline/kernelJobs';
import { runStep } from './store/artifactStore';
import { digestPath, digestTextInput } from './store/digest';
import { kernelEnv, type DeviceSet } from '../workers/deviceSet';
import { resolveRun, type ResolvedRun } from './runPaths';
import { withOomBackoff, type BatchLayout } from './oomBackoff';
import { evalCacheKey, keepPreviousResults, kernelDatasets, paperProtocol, resolveEvalDatasets, validateEvalDatasets } from './evalDatasets';
import { exportOnnxStep } from './onnx/exportStep';
import { checkModelDir } from './snapshot';
import { trainingMemory } from '../pipeline/parallelism';
import { completeCheckpoints, countLines, modelTensorStats, pruneCheckpoints, requireDiskSpace, trainingEstimate } from './store/diskSpace';
import { kernelFaultEnv } from './faults';
import { loadChatTokenizer } from './onnx/tokenizer';

export interface GpuWorkerContext {
  devices: DeviceSet;
  /** Serialises GPU activities of one worker across its task queues: one kernel owns the devices at a time. */
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  /** CPU threads per kernel (torch.set_num_threads); unset = torch's default (all cores). */
  threads?: number;
}

/** Kernel code version; part of every GPU step's cache key so a kernel change re-runs its steps. */
export const KERNEL_VERSION = '0.2.0';

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

/** Stall limit: the step table's, unless the config's timeouts.stallSeconds overrides it. */
function stallMs(input: StepInput): number {
  const override = input.config.timeouts.stallSeconds;
  return override ? override * 1000 : durationMs(stepRow(input.stepId).timeouts.stall);
}

/** Devices a kernel of this worker may use at once: the GPUs it owns, or the CPU as one. */
export function deviceCount(devices: DeviceSet): number {
  return devices.kind === 'cuda' ? devices.ids.length : 1;
}

/** The global batch is microBatch × gradAccum on any number of devices, so each takes gradAccum / N. */
/**
 * The DDP footprint of one GPU (pipeline/parallelism.ts) that `parallelism.strategy: auto` is
 * decided by in the kernel; null when the model's config.json lacks its shape.
 */
async function memoryEstimateGiB(modelDir: string, t: RunConfig['sft'] | RunConfig['joint'], model: { params: number; trainable: number; branches: number }, devices: number, bytesPerParam: number): Promise<number | null> {
  let cfg: { hidden_size?: unknown; num_hidden_layers?: unknown };
  try {
    cfg = JSON.parse(await fsp.readFile(path.join(modelDir, 'config.json'), 'utf8'));
  } catch {
    return null;
  }
  if (typeof cfg.hidden_size !== 'number' || typeof cfg.num_hidden_layers !== 'number') return null;
  const est = trainingMemory({ params: model.params, trainableParams: model.trainable, bytesPerParam, microBatch: t.microBatch, maxLength: t.maxLength, hiddenSize: cfg.hidden_size, layers: cfg.num_hidden_layers, branches: model.branches, gradientCheckpointing: t.gradientCheckpointing, devices });
  return Math.round(est.ddpGiB * 100) / 100;
}

function checkSplit(t: RunConfig['sft'] | RunConfig['joint'], field: 'sft' | 'joint', n: number): void {
  if (t.parallelism.strategy === 'fsdp' && n <= 1) {
    throw ApplicationFailure.create({
      type: ErrorTypes.InvalidConfig,
      nonRetryable: true,
      message: `${field}.parallelism.strategy: fsdp shards the model over several GPUs, and this worker runs the step on one device (a single GPU or a CPU-only worker); use auto or ddp, or a worker with several GPUs`,
      details: [{ file: null, line: null, field: `${field}.parallelism.strategy` }],
    });
  }
  if (t.gradAccum % n === 0) return;
  throw ApplicationFailure.create({
    type: ErrorTypes.InvalidInput,
    nonRetryable: true,
    message: `${field}.gradAccum ${t.gradAccum} cannot be split over the ${n} GPUs of this worker: the global batch (microBatch × gradAccum = ${t.microBatch * t.gradAccum}) stays the same on any number of GPUs, so gradAccum must be a multiple of ${n}; change it, or run the step on a worker whose device count divides it`,
  });
}


/**
 * Before the kernel starts (imports, tokenising the whole data file: half a minute and more): an
 * sft.maxLength that the system prompt and chat template fill on their own, before any question,
 * trains on nothing. Best effort: a tokenizer Node cannot load is left to the kernel, which reads
 * it anyway and reports the exact prompt lengths.
 */
export function checkSftMaxLength(modelDir: string, sft: Pick<RunConfig['sft'], 'maxLength' | 'systemPrompt'>): void {
  let floor: number;
  try {
    const tok = loadChatTokenizer(modelDir);
    if (!tok.hasChatTemplate) return;
    floor = tok.encode(tok.renderChat([{ role: 'system', content: sft.systemPrompt ?? paperProtocol().sftSystemPrompt }, { role: 'user', content: '' }], true)).length;
  } catch {
    return;
  }
  if (sft.maxLength > floor) return;
  throw ApplicationFailure.create({
    type: ErrorTypes.InvalidConfig,
    nonRetryable: true,
    message: `sft.maxLength ${sft.maxLength} leaves nothing to train on: the system prompt and chat template alone are ${floor} tokens, before the question and the answer. Raise sft.maxLength to more than ${floor} plus the longest question (the sft kernel reports the exact lengths if it is still too short)`,
    details: [{ file: null, line: null, field: 'sft.maxLength', promptTokensWithoutQuestion: floor }],
  });
}

type JobOf<V extends KernelVerb> = Omit<KernelJob<V>, 'log_file' | 'device' | 'seed'> & { seed?: number };

interface LaunchOptions {
  /** torchrun ranks (training on several GPUs). */
  processes?: number;
  /** Environment instead of the whole device set's (a shard's single GPU). */
  env?: Record<string, string>;
  /** Suffix of the job and log file names ("shard-1-of-4"). */
  tag?: string;
  onProgress?: (p: StepProgress) => void;
  cancelled?: Promise<never>;
  /** Job field → config key (configKeysOf), so kernel errors name what the user wrote. */
  configKeys?: Record<string, string>;
}

export function kernelSteps(ctx: GpuWorkerContext) {
  const devicesN = deviceCount(ctx.devices);

  /** One kernel process (or torchrun) for a step; the caller holds the devices. */
  function launch<V extends KernelVerb>(input: StepInput, run: ResolvedRun, verb: V, job: JobOf<V>, opts: LaunchOptions = {}): Promise<KernelOutcome> {
    const tag = opts.tag ? `.${opts.tag}` : '';
    const full = {
      ...job,
      log_file: path.join(run.runDir, A.LOGS_DIR, `${input.stepId}${tag}.log`),
      device: device(input.config, ctx.devices),
      seed: job.seed ?? 42,
      threads: ctx.threads ?? null,
    } as KernelJob<V>;
    return runKernel(verb, full, {
      jobFile: path.join(run.runDir, A.JOBS_DIR, `${input.stepId}.attempt-${safeAttempt()}${tag}.json`),
      // WMSS_FAULT_KERNEL arms a test-only kernel fault (activities/faults.ts); empty otherwise
      env: { ...(opts.env ?? kernelEnv(ctx.devices)), ...kernelFaultEnv(run.runDir, input.stepId) },
      stallMs: stallMs(input),
      onHeartbeat: opts.onProgress ?? ((p: StepProgress) => heartbeat(p)),
      cancelled: opts.cancelled ?? cancelledSignal(),
      processes: opts.processes,
      configKeys: opts.configKeys,
    });
  }

  /**
   * Runs `fn` once this worker's devices are free. Tasks of a host-pinned queue are accepted at
   * once and wait here (workers/createWorkers.ts), heartbeating so that the wait is not taken
   * for a dead worker; a task cancelled while waiting never starts its kernel.
   */
  async function withDevices<T>(fn: () => Promise<T>): Promise<T> {
    const waiting = setInterval(() => heartbeat({ done: 0, total: 0, unit: 'samples', phase: 'waiting for this worker\'s devices', updatedAt: new Date().toISOString() }), 5000);
    let cancelledWhileWaiting: unknown;
    cancelledSignal()?.catch((err) => (cancelledWhileWaiting ??= err));
    return ctx.exclusive(async () => {
      clearInterval(waiting);
      if (cancelledWhileWaiting !== undefined) throw cancelledWhileWaiting;
      return fn();
    });
  }

  function kernel<V extends KernelVerb>(input: StepInput, run: ResolvedRun, verb: V, job: JobOf<V>, opts: LaunchOptions = {}): Promise<KernelOutcome> {
    return withDevices(() => launch(input, run, verb, job, opts));
  }

  /** One kernel per device on shard i of N of the items; `jobOf` gives shard i its job. */
  function sharded<V extends KernelVerb>(input: StepInput, run: ResolvedRun, verb: V, jobOf: (shard: { index: number; count: number }) => JobOf<V>, configKeys?: Record<string, string>): Promise<KernelOutcome[]> {
    const envs = shardEnvs(ctx.devices);
    const progress: (StepProgress | undefined)[] = [];
    return withDevices(() =>
      runShards(envs.length, cancelledSignal(), (index, cancelled) =>
        launch(input, run, verb, jobOf({ index, count: envs.length }), {
          env: envs[index],
          tag: `shard-${index}-of-${envs.length}`,
          cancelled,
          configKeys,
          onProgress: (p) => {
            progress[index] = p;
            heartbeat(sumProgress(progress));
          },
        }),
      ),
    );
  }

  /**
   * evaluate on N shards, then the kernel's merge_shards (no model loaded) writes the job's
   * output_dir as one run would have: the per-set files are summarised in one place, Python.
   */
  async function evaluateSharded(input: StepInput, run: ResolvedRun, job: JobOf<'evaluate'>, configKeys?: Record<string, string>): Promise<KernelOutcome> {
    const shardDir = (i: number, n: number) => `${job.output_dir}.shard-${i}-of-${n}`;
    const outs = await sharded(input, run, 'evaluate', (shard) => ({ ...job, output_dir: shardDir(shard.index, shard.count), shard }), configKeys);
    const dirs = outs.map((_, i) => shardDir(i, outs.length));
    const merged = await kernel(input, run, 'evaluate', { ...job, merge_shards: dirs }, { configKeys, tag: 'merge' });
    await Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true })));
    const tokensPerS = outs.reduce((s, o) => s + Number(o.metrics.tokens_per_s ?? 0), 0);
    return { outputs: merged.outputs, metrics: { ...merged.metrics, tokens_per_s: tokensPerS, shards: outs.length } };
  }

  const relative = (run: ResolvedRun, p: string) => path.relative(run.runDir, p).split(path.sep).join('/');

  /**
   * Disk safety of a training step (activities/store/diskSpace.ts): prune to keepCheckpoints,
   * check the free space against the checkpoints still to write, and prune again each time the
   * kernel reports a new complete checkpoint and once it is done (before the manifest records
   * the output dir).
   */
  function bytesPerParam(input: StepInput, t: RunConfig['sft'] | RunConfig['joint']): number {
    return t.dtype === 'float32' || (t.dtype === 'auto' && device(input.config, ctx.devices) === 'cpu') ? 4 : 2;
  }

  async function trainingDisk(input: StepInput, t: RunConfig['sft'] | RunConfig['joint'], outputDir: string, model: { params: number; trainable: number }, rows: () => Promise<number>) {
    await pruneCheckpoints(outputDir, t.keepCheckpoints);
    const complete = await completeCheckpoints(outputDir);
    const totalSteps = t.maxSteps ?? Math.floor(((await rows()) * t.epochs) / (t.microBatch * t.gradAccum));
    const estimate = trainingEstimate({ params: model.params, trainableParams: model.trainable, bytesPerParam: bytesPerParam(input, t), totalSteps, saveEvery: t.saveEvery, keepCheckpoints: t.keepCheckpoints, resumeStep: complete.at(-1)?.step ?? 0, existing: complete.length });
    await requireDiskSpace(input.config, input.stepId, outputDir, estimate);
    let seen = complete.at(-1)?.step;
    let pruning: Promise<unknown> = Promise.resolve();
    const prune = () => (pruning = pruning.then(() => pruneCheckpoints(outputDir, t.keepCheckpoints)).catch(() => undefined));
    return {
      onProgress: (p: StepProgress) => {
        heartbeat(p);
        const step = p.lastCheckpoint?.step;
        if (t.keepCheckpoints && step !== undefined && step !== seen) {
          seen = step;
          void prune();
        }
      },
      /** Last prune, after the kernel: the manifest then records the kept checkpoints only. */
      async finish(): Promise<void> {
        await pruning;
        await pruneCheckpoints(outputDir, t.keepCheckpoints);
      },
    };
  }

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
      const modelKey = base ? await digestPath(run.runDir, run.baseModel, 'baseModel') : input.deps.sft!.cacheKey;
      return runStep(input, {
        cacheKey: { kernel: KERNEL_VERSION, entropy: config.entropy, dataFormat: config.dataFormat, model: modelKey, data: await digestTextInput(run.runDir, run.dataFile, 'dataFile') },
        outputs: { entropy: base ? A.ENTROPY_0 : A.ENTROPY_1 },
        mode: 'atomic',
        heartbeat,
        produce: async ({ paths }) => {
          // a malformed base model fails here as InvalidInput, not as a kernel crash retried 5 times
          if (base) await checkModelDir(run.baseModel);
          const job = {
            model_path: modelPath,
            data_file: run.dataFile,
            data_format: config.dataFormat,
            output_path: paths.entropy,
            field: base ? ('entropy_0' as const) : ('entropy_1' as const),
            ...fromSection(config.entropy, ENTROPY_JOB_FIELDS),
          };
          const configKeys = base ? { ...JOB_CONFIG_KEYS.entropy, model_path: 'baseModel' } : JOB_CONFIG_KEYS.entropy;
          if (devicesN === 1) return { metrics: (await kernel(input, run, 'entropy', job, { configKeys })).metrics };
          const shardFile = (i: number, n: number) => `${paths.entropy}.shard-${i}-of-${n}`;
          const outs = await sharded(input, run, 'entropy', (shard) => ({ ...job, output_path: shardFile(shard.index, shard.count), shard }), configKeys);
          const files = outs.map((_, i) => shardFile(i, outs.length));
          await mergeJsonlByKey(files, 'idx', paths.entropy);
          await Promise.all(files.map((f) => fsp.rm(f, { force: true })));
          return { metrics: entropyMetrics(outs) };
        },
      });
    },

    async trainSft(input: StepInput): Promise<StepResult> {
      const run = resolveRun(input.config);
      const { sft } = input.config;
      return runStep(input, {
        cacheKey: { kernel: KERNEL_VERSION, sft: withoutRetention(sft), dataFormat: input.config.dataFormat, model: await digestPath(run.runDir, run.baseModel, 'baseModel'), data: await digestTextInput(run.runDir, run.dataFile, 'dataFile') },
        outputs: { dir: A.STAGE1_DIR },
        mode: 'in-place',
        heartbeat,
        produce: async ({ paths }) => {
          checkSplit(sft, 'sft', devicesN);
          // a malformed base model fails here as InvalidInput, not as a kernel crash retried 5 times
          await checkModelDir(run.baseModel);
          checkSftMaxLength(run.baseModel, sft);
          const { params } = await modelTensorStats(run.baseModel);
          const disk = await trainingDisk(input, sft, paths.dir, { params, trainable: params }, () => countLines(run.dataFile));
          return withOomBackoff(run.runDir, input.stepId, sft, async (layout) => {
            const out = await kernel(input, run, 'sft', {
              ...trainingJob({ ...sft, ...layout }, run, input.config.dataFormat, paths.dir),
              ...simulatedOom(input, layout),
              memory_estimate_gib: await memoryEstimateGiB(run.baseModel, { ...sft, ...layout }, { params, trainable: params, branches: 1 }, devicesN, bytesPerParam(input, sft)),
              model_path: run.baseModel,
              ...fromSection(sft, SFT_JOB_FIELDS),
            }, { processes: devicesN, onProgress: disk.onProgress, configKeys: JOB_CONFIG_KEYS.sft });
            await disk.finish();
            return { metrics: { ...out.metrics, oom_halvings: layout.halvings }, outputs: { checkpoint: relative(run, out.outputs.checkpoint) } };
          });
        },
      });
    },

    async trainJoint(input: StepInput): Promise<StepResult> {
      const run = resolveRun(input.config);
      const { joint } = input.config;
      return runStep(input, {
        cacheKey: { kernel: KERNEL_VERSION, joint: withoutRetention(joint), dataFormat: input.config.dataFormat, fused: input.deps.fuse!.cacheKey, resample: input.deps.merge!.cacheKey, data: await digestTextInput(run.runDir, run.dataFile, 'dataFile') },
        outputs: { dir: A.stage3Dir(input.config) },
        mode: 'in-place',
        heartbeat,
        produce: async ({ paths }) => {
          checkSplit(joint, 'joint', devicesN);
          const { params } = await modelTensorStats(path.join(run.runDir, input.deps.fuse!.outputs.fused));
          const positions = path.join(run.runDir, input.deps.merge!.outputs.positions);
          const disk = await trainingDisk(input, joint, paths.dir, { params, trainable: joint.freezeWeak ? params / 2 : params }, () => countLines(positions));
          return withOomBackoff(run.runDir, input.stepId, joint, async (layout) => {
            const out = await kernel(input, run, 'joint', {
              ...trainingJob({ ...joint, ...layout }, run, input.config.dataFormat, paths.dir),
              ...simulatedOom(input, layout),
              memory_estimate_gib: await memoryEstimateGiB(path.join(run.runDir, input.deps.fuse!.outputs.fused), { ...joint, ...layout }, { params, trainable: joint.freezeWeak ? params / 2 : params, branches: 2 }, devicesN, bytesPerParam(input, joint)),
              fused_dir: path.join(run.runDir, input.deps.fuse!.outputs.fused),
              indices_file: path.join(run.runDir, input.deps.merge!.outputs.positions),
              ...fromSection(joint, JOINT_JOB_FIELDS),
            }, { processes: devicesN, onProgress: disk.onProgress, configKeys: JOB_CONFIG_KEYS.joint });
            await disk.finish();
            return { metrics: { ...out.metrics, oom_halvings: layout.halvings }, outputs: { checkpoint: relative(run, out.outputs.checkpoint) } };
          });
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
      const resolved = await resolveEvalDatasets(evalConfig, run.runDir);
      const dataKeys = resolved.dataKeys;
      const datasets = kernelDatasets(resolved.datasets);
      return runStep(input, {
        cacheKey: { kernel: KERNEL_VERSION, eval: evalCacheKey(evalConfig), models: models.map((m) => [m.label, m.key]), data: dataKeys },
        outputs: { results: A.RESULTS_DIR },
        mode: 'atomic',
        heartbeat,
        produce: async ({ paths }) => {
          await validateEvalDatasets(resolved.datasets);
          await keepPreviousResults(run.runDir, evalConfig.overwrite);
          const metrics: Record<string, number | string> = {};
          for (const model of models) {
            const job = {
              model_path: model.path,
              label: model.label,
              output_dir: path.join(paths.results, model.label),
              datasets,
              ...fromSection(evalConfig, EVAL_JOB_FIELDS),
              ...fromSection(evalConfig.sampling, SAMPLING_JOB_FIELDS),
            };
            const configKeys = JOB_CONFIG_KEYS.evaluate;
            const out = devicesN === 1 ? await kernel(input, run, 'evaluate', job, { configKeys }) : await evaluateSharded(input, run, job, configKeys);
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

/** keepCheckpoints is not part of the cache key: it changes which old checkpoints stay, not the result. */
function withoutRetention<T extends { keepCheckpoints?: number }>(t: T): Omit<T, 'keepCheckpoints'> {
  const { keepCheckpoints: _ignored, ...rest } = t;
  return rest;
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

/**
 * Fault injection for the out-of-memory tests: WMSS_FAULT_OOM=<step id> makes that step's first
 * attempt (before any halving) raise the kernel's out-of-memory path.
 */
function simulatedOom(input: StepInput, layout: BatchLayout): { simulate_oom?: boolean } {
  return process.env.WMSS_FAULT_OOM === input.stepId && layout.halvings === 0 ? { simulate_oom: true } : {};
}

/*
 * Kernel job fields taken straight from a config section: job field → key in the section. The
 * same tables build the jobs (fromSection) and turn a job field named in a kernel error back
 * into the config key the user wrote (configKeysOf: `max_length` → `sft.maxLength`), so the two
 * cannot drift apart.
 */
type Training = Omit<RunConfig['sft'], 'systemPrompt' | 'parallelism'>;
const TRAINING_JOB_FIELDS = {
  max_length: 'maxLength', lr: 'lr', warmup_ratio: 'warmupRatio', weight_decay: 'weightDecay', max_grad_norm: 'maxGradNorm',
  epochs: 'epochs', micro_batch: 'microBatch', grad_accum: 'gradAccum', max_steps: 'maxSteps', save_every: 'saveEvery',
  gradient_checkpointing: 'gradientCheckpointing', compile_layers: 'compileLayers', dtype: 'dtype', seed: 'seed',
} as const satisfies Record<string, keyof Training>;
const PARALLELISM_JOB_FIELDS = { parallelism: 'strategy', reshard_after_forward: 'reshardAfterForward', cpu_offload: 'cpuOffload' } as const satisfies Record<string, keyof RunConfig['sft']['parallelism']>;
const SFT_JOB_FIELDS = { system_prompt: 'systemPrompt' } as const satisfies Record<string, keyof RunConfig['sft']>;
const JOINT_JOB_FIELDS = { fusion_lambda: 'fusionLambda', freeze_weak: 'freezeWeak', loss_on: 'lossOn' } as const satisfies Record<string, keyof RunConfig['joint']>;
const ENTROPY_JOB_FIELDS = { definition: 'definition', max_length: 'maxLength', batch_tokens: 'batchTokens', vocab_chunk: 'vocabChunk' } as const satisfies Record<string, keyof RunConfig['entropy']>;
const EVAL_JOB_FIELDS = { protocol: 'protocol', batch_size: 'batchSize', system_prompt: 'systemPrompt', enable_thinking: 'enableThinking' } as const satisfies Record<string, keyof RunConfig['eval']>;
const SAMPLING_JOB_FIELDS = { temperature: 'temperature', top_p: 'topP', n_samples: 'n', seed: 'seed' } as const satisfies Record<string, keyof RunConfig['eval']['sampling']>;
/** Job fields that come from top-level config keys, in every job that has them. */
const TOP_LEVEL_JOB_FIELDS = { data_file: 'dataFile', data_format: 'dataFormat' } as const;

type FromSection<S, T extends Record<string, keyof S>> = { [F in keyof T]: undefined extends S[T[F]] ? Exclude<S[T[F]], undefined> | null : S[T[F]] };

/** The job fields of `table` with their values from `section` (unset optional keys: null, left out of the job file). */
export function fromSection<S extends object, T extends Record<string, keyof S>>(section: S, table: T): FromSection<S, T> {
  return Object.fromEntries(Object.entries(table).map(([field, key]) => [field, section[key as keyof S] ?? null])) as FromSection<S, T>;
}

/** Job field → full config key (`sectionName.key`), plus the top-level ones and `extra`. */
export function configKeysOf(sectionName: string, table: Record<string, string>, extra: Record<string, string> = {}): Record<string, string> {
  return { ...TOP_LEVEL_JOB_FIELDS, ...Object.fromEntries(Object.entries(table).map(([field, key]) => [field, `${sectionName}.${key}`])), ...extra };
}

/** Per verb: job field → the config key it is built from. */
export const JOB_CONFIG_KEYS = {
  sft: configKeysOf('sft', { ...TRAINING_JOB_FIELDS, ...SFT_JOB_FIELDS }, { model_path: 'baseModel', ...configKeysOf('sft.parallelism', PARALLELISM_JOB_FIELDS) }),
  joint: configKeysOf('joint', { ...TRAINING_JOB_FIELDS, ...JOINT_JOB_FIELDS }, configKeysOf('joint.parallelism', PARALLELISM_JOB_FIELDS)),
  entropy: configKeysOf('entropy', ENTROPY_JOB_FIELDS),
  evaluate: configKeysOf('eval', EVAL_JOB_FIELDS, { datasets: 'eval.benchmarks', ...configKeysOf('eval.sampling', SAMPLING_JOB_FIELDS) }),
};

function trainingJob(t: RunConfig['sft'] | RunConfig['joint'], run: ResolvedRun, dataFormat: RunConfig['dataFormat'], outputDir: string) {
  const fields = { ...fromSection<Training, typeof TRAINING_JOB_FIELDS>(t, TRAINING_JOB_FIELDS), ...fromSection(t.parallelism, PARALLELISM_JOB_FIELDS) };
  return { ...fields, seed: t.seed, data_file: run.dataFile, data_format: dataFormat, output_dir: outputDir };
}

function safeAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1;
  }
}
