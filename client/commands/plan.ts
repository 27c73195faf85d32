/** `wmss plan <config>`: the step graph in run order, with what each step reads and writes. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { RunConfig } from '../../pipeline/config';
import { manifestPath } from '../../pipeline/artifacts';
import { FIT_FRACTION, trainingMemory } from '../../pipeline/parallelism';
import { activeSteps, STEPS } from '../../pipeline/steps';
import { modelTensorStats } from '../../activities/store/diskSpace';

/**
 * The memory estimate of a training step on GPUs (bf16), from the base model's shape: the fused
 * model of step 5b has two base-shaped branches. Undefined when the base model cannot be read.
 */
async function memoryLine(config: RunConfig, id: 'sft' | 'joint'): Promise<string | undefined> {
  let cfg: { hidden_size?: unknown; num_hidden_layers?: unknown };
  try {
    cfg = JSON.parse(readFileSync(path.join(config.baseModel, 'config.json'), 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof cfg.hidden_size !== 'number' || typeof cfg.num_hidden_layers !== 'number') return undefined;
  const t = config[id];
  const one = (await modelTensorStats(config.baseModel).catch(() => undefined))?.params;
  if (!one) return undefined;
  const branches = id === 'joint' ? 2 : 1;
  const params = one * branches;
  const trainable = id === 'joint' && config.joint.freezeWeak ? one : params;
  const at = (devices: number) =>
    trainingMemory({
      params,
      trainableParams: trainable,
      bytesPerParam: t.dtype === 'float32' ? 4 : 2,
      microBatch: t.microBatch,
      maxLength: t.maxLength,
      hiddenSize: cfg.hidden_size as number,
      layers: cfg.num_hidden_layers as number,
      branches,
      gradientCheckpointing: t.gradientCheckpointing,
      devices,
    });
  const e2 = at(2);
  const g = (x: number) => `${x.toFixed(2)} GiB`;
  const auto =
    t.parallelism.strategy === 'auto'
      ? `auto: fsdp on GPUs under ${g(e2.ddpGiB / FIT_FRACTION)}, else ddp`
      : t.parallelism.strategy;
  return `      memory per GPU (estimate, every sequence at maxLength): ddp ${g(e2.ddpGiB)} (weights ${g(e2.weightsGiB)}, gradients ${g(e2.gradientsGiB)}, AdamW ${g(e2.optimizerGiB)}, activations ${g(e2.activationsGiB)}); fsdp ${g(e2.fsdpGiB)} on 2 GPUs, ${g(at(8).fsdpGiB)} on 8; strategy ${auto}`;
}

export async function renderPlan(config: RunConfig): Promise<string> {
  const lines = [`run ${config.runName} in ${config.runDir}`];
  for (const step of activeSteps(config)) {
    const done = existsSync(path.join(config.runDir, manifestPath(step.id)));
    lines.push(
      `${step.number.padEnd(3)} ${step.title}  [${step.queue}]${done ? '  (outputs recorded: verified and reused if inputs are unchanged)' : ''}`,
    );
    lines.push(
      `      after: ${step.needs.length ? step.needs.map((id) => STEPS.find((s) => s.id === id)!.number).join(', ') : 'start'}`,
    );
    lines.push(`      reads: ${step.inputs(config).join(', ')}`);
    lines.push(`      writes: ${step.outputs(config).join(', ')}`);
    if (step.id === 'sft' || step.id === 'joint') {
      const memory = await memoryLine(config, step.id);
      if (memory) lines.push(memory);
    }
  }
  return lines.join('\n');
}
