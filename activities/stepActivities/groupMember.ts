/**
 * A training step as one member of a multi-node group (pipeline/groups.ts). Member 0 runs the
 * step under the artifact store like a step on one host: cache check, ownership of the output
 * dir, manifest. The other members only run their part of the torchrun world: they write into
 * the same output dir (shared storage: their shards of each checkpoint) and publish nothing, so
 * the step's result and manifest come from one place.
 */
import type { StepInput, StepResult } from '../../pipeline/steps';
import { currentHost, readManifest, resolveInRunDir, runStep, type StepSpec } from '../store/artifactStore';
import { dependencyInputs, stepCacheKey } from '../store/artifactStore';
import { requireAbsoluteRunDir, toRunDirRelative } from '../store/runDirPaths';

/** runStep for a step on one host and for member 0; the member's part for the others. */
export function runTrainingStep(input: StepInput, spec: StepSpec): Promise<StepResult> {
  if (!input.group || input.group.index === 0) return runStep(input, spec);
  return runAsMember(input, spec);
}

async function runAsMember(input: StepInput, spec: StepSpec): Promise<StepResult> {
  const started = Date.now();
  const runDir = requireAbsoluteRunDir(input.config.runDir);
  // Member 0 returns a cache hit without starting its kernel: start none here either (it would
  // wait for member 0 at the rendezvous until the join timeout).
  const key = stepCacheKey(input.stepId, spec.cacheKey, await dependencyInputs(runDir, input.deps));
  const previous = await readManifest(runDir, input.stepId);
  if (previous && previous.cacheKey === key) return { ...previous.result, cached: true, host: currentHost() };

  const paths = Object.fromEntries(
    Object.entries(spec.outputs).map(([name, rel]) => [name, resolveInRunDir(runDir, rel)]),
  );
  const produced = await spec.produce({ runDir, paths, heartbeat: spec.heartbeat ?? (() => undefined) });
  const outputs = { ...spec.outputs };
  for (const [name, p] of Object.entries(produced.outputs ?? {})) outputs[name] = toRunDirRelative(runDir, p);
  return {
    stepId: input.stepId,
    host: currentHost(),
    cached: false,
    outputs,
    metrics: { ...(produced.metrics ?? {}), group_member: input.group!.index },
    cacheKey: key,
    durationMs: Date.now() - started,
  };
}
