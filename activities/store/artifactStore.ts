/**
 * The artifact store: how every step publishes its outputs (docs/recovery.md, "Cache").
 *
 *  - cache key = sha256 of { step, the step's own key material, for each dependency its cache key
 *    and the digest of its recorded outputs }. So a re-trained m1 (same config, new bytes)
 *    invalidates what was built from it.
 *  - verified hit: the manifest has the same key and every recorded output is still there with
 *    the same size (and sha256 with verify 'full') → the recorded result, without running produce.
 *  - atomic mode: produce() writes into `<name>.partial-<random>` siblings; when it returns they are
 *    fsynced and renamed into place. in-place mode: produce() writes the final paths itself and
 *    owns crash safety (training checkpoints with COMPLETE markers).
 *  - the manifest is written last (fsync + rename): it is the commit point. It is removed before a
 *    step re-runs, so a crash half-way through a re-run never leaves a stale manifest beside new outputs.
 */
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import type { StepId, StepInput, StepResult } from '../../pipeline/steps';
import { sha256Json } from './canonicalJson';
import { DigestMemo, digestDir, digestFile, listFiles, sha256File } from './digest';
import { fsyncTree, isStagingOf, replaceWithStaged, stagingName } from './durableFs';
import { artifactConflict } from './failures';
import { HeartbeatTicker, progressDetails, type Heartbeat } from './heartbeat';
import { faultPause } from '../faults';
import {
  MANIFEST_FORMAT,
  outputsDigestOf,
  readManifest,
  removeManifest,
  writeManifest,
  type RecordedOutput,
  type StepManifest,
} from './manifest';
import { confineReal, requireAbsoluteRunDir, resolveInRunDir, toRunDirRelative } from './runDirPaths';
import { currentHost } from '../hostContext';
import { claimOutputs } from './ownership';

export { readManifest, type StepManifest, type RecordedOutput } from './manifest';
export { resolveInRunDir } from './runDirPaths';

export type PublishMode = 'atomic' | 'in-place';

export interface ProduceContext {
  /** Absolute run dir. */
  runDir: string;
  /** Output name → absolute path to write: a staging sibling in atomic mode, the final path in in-place mode. Parents exist; the path itself does not (atomic). */
  paths: Record<string, string>;
  /** Report progress: forwarded to the activity heartbeat and repeated every 10 s until the next call. */
  heartbeat: Heartbeat;
}

export interface ProduceResult {
  metrics?: Record<string, number | string>;
  /** Extra or overriding outputs (e.g. the final checkpoint), relative to the run dir or absolute inside it. They must exist once published. */
  outputs?: Record<string, string>;
}

export interface StepSpec {
  /** JSON value of exactly what determines the outputs besides the dependencies (config slice, digests of external inputs, versions). */
  cacheKey: unknown;
  /** Output name → path relative to the run dir. */
  outputs: Record<string, string>;
  mode: PublishMode;
  produce: (ctx: ProduceContext) => Promise<ProduceResult>;
  /** Where heartbeats go; default none (pure tests). Activities pass activityHeartbeat. */
  heartbeat?: Heartbeat;
  /** 'size' (default): a hit needs every output with its recorded size; 'full': also its sha256 (re-hashed). */
  verify?: 'size' | 'full';
}

const HEARTBEAT_INTERVAL_MS = 10_000;

/** Host that holds the outputs: the worker's host (activities/hostContext.ts). */
export { currentHost };

let cachedVersion: string | undefined;
/** wmss-flow's package.json version, found above this file from source or dist/. */
export function wmssFlowVersion(): string {
  if (cachedVersion) return cachedVersion;
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'wmss-flow') return (cachedVersion = pkg.version ?? '0.0.0');
    }
    if (path.dirname(dir) === dir) return (cachedVersion = 'unknown');
  }
}

/** What a step's key depends on through its dependencies: their keys and the digests of their outputs. */
export async function dependencyInputs(runDir: string, deps: StepInput['deps']): Promise<StepManifest['inputs']> {
  const inputs: StepManifest['inputs'] = {};
  for (const id of Object.keys(deps).sort() as StepId[]) {
    const dep = deps[id];
    if (!dep) continue;
    const manifest = await readManifest(runDir, id);
    inputs[id] = {
      cacheKey: dep.cacheKey,
      outputsDigest: manifest && manifest.cacheKey === dep.cacheKey ? outputsDigestOf(manifest) : null,
    };
  }
  return inputs;
}

export function stepCacheKey(stepId: string, keyMaterial: unknown, inputs: StepManifest['inputs']): string {
  return sha256Json({ step: stepId, key: keyMaterial, inputs });
}

/** Why the recorded outputs no longer match, or undefined when they all do. */
export async function outputsMismatch(
  runDir: string,
  manifest: StepManifest,
  verify: 'size' | 'full',
): Promise<string | undefined> {
  for (const [name, rec] of Object.entries(manifest.outputs)) {
    const abs = resolveInRunDir(runDir, rec.path);
    const stat = await fsp.stat(abs).catch(() => undefined);
    if (!stat) return `output ${name} (${rec.path}) is missing`;
    if (rec.kind === 'file') {
      if (!stat.isFile()) return `output ${name} (${rec.path}) is no longer a file`;
      if (stat.size !== rec.size) return `output ${name} (${rec.path}) has ${stat.size} bytes, manifest ${rec.size}`;
      if (verify === 'full' && (await sha256File(abs)) !== rec.sha256)
        return `output ${name} (${rec.path}) has another sha256`;
      continue;
    }
    if (!stat.isDirectory()) return `output ${name} (${rec.path}) is no longer a directory`;
    const present = await listFiles(abs);
    const recorded = rec.files ?? [];
    if (present.length !== recorded.length || present.some((p, i) => p !== recorded[i].path))
      return `output ${name} (${rec.path}) has another file list`;
    for (const f of recorded) {
      const fileAbs = path.join(abs, f.path);
      if ((await fsp.stat(fileAbs)).size !== f.size) return `output ${name}: ${f.path} changed size`;
      if (verify === 'full' && (await sha256File(fileAbs)) !== f.sha256)
        return `output ${name}: ${f.path} has another sha256`;
    }
  }
  return undefined;
}

/** Remove the staging outputs of a failed atomic attempt. */
async function discard(stagingPaths: Record<string, string>): Promise<void> {
  await Promise.all(Object.values(stagingPaths).map((p) => fsp.rm(p, { recursive: true, force: true })));
}

/** Remove `<name>.partial-*` / `<name>.old-*` siblings left by a crashed attempt. */
async function removeStaleStaging(finalPath: string): Promise<void> {
  const dir = path.dirname(finalPath);
  const base = path.basename(finalPath);
  const entries = await fsp.readdir(dir).catch(() => [] as string[]);
  await Promise.all(
    entries.filter((e) => isStagingOf(base, e)).map((e) => fsp.rm(path.join(dir, e), { recursive: true, force: true })),
  );
}

async function recordOutput(
  runDir: string,
  rel: string,
  memo: DigestMemo,
  onBytes: (n: number) => void,
): Promise<RecordedOutput> {
  const abs = await confineReal(runDir, resolveInRunDir(runDir, rel));
  const stat = await fsp.stat(abs).catch(() => undefined);
  if (!stat) throw artifactConflict(abs, 'the step reported this output but it does not exist');
  if (stat.isDirectory()) {
    const dir = await digestDir(abs, { memo, onBytes });
    return { path: rel, kind: 'dir', size: dir.size, sha256: dir.sha256, files: dir.files };
  }
  return { path: rel, kind: 'file', size: stat.size, sha256: await digestFile(abs, { memo, onBytes }) };
}

/**
 * Run one step under the store: a verified cache hit returns the recorded result (cached = true);
 * otherwise produce() runs and its outputs are published with a manifest.
 */
export async function runStep(input: StepInput, spec: StepSpec): Promise<StepResult> {
  const started = Date.now();
  const runDir = requireAbsoluteRunDir(input.config.runDir);
  const finalPaths = Object.fromEntries(
    Object.entries(spec.outputs).map(([name, rel]) => [name, resolveInRunDir(runDir, rel)]),
  );
  const inputs = await dependencyInputs(runDir, input.deps);
  const cacheKey = stepCacheKey(input.stepId, spec.cacheKey, inputs);
  const ticker = new HeartbeatTicker(spec.heartbeat ?? (() => undefined), HEARTBEAT_INTERVAL_MS);
  try {
    const previous = await readManifest(runDir, input.stepId);
    if (previous && previous.cacheKey === cacheKey) {
      ticker.update({ ...progressDetails(0, 1, 'verify'), phase: 'verify' });
      if ((await outputsMismatch(runDir, previous, spec.verify ?? 'size')) === undefined) {
        return { ...previous.result, cached: true, host: currentHost() };
      }
    }
    ticker.quiet();
    // Only what this step wrote may be replaced, and nothing through a symlink out of the run dir (ownership.ts).
    await claimOutputs(runDir, input.stepId, previous, finalPaths);
    await removeManifest(runDir, input.stepId);

    const paths: Record<string, string> = {};
    for (const [name, finalPath] of Object.entries(finalPaths)) {
      await fsp.mkdir(path.dirname(finalPath), { recursive: true });
      await removeStaleStaging(finalPath);
      paths[name] = spec.mode === 'atomic' ? stagingName(finalPath) : finalPath;
    }

    let produced: ProduceResult;
    const produceStarted = Date.now();
    try {
      produced = await spec.produce({ runDir, paths, heartbeat: (details) => ticker.update(details) });
    } catch (err) {
      if (spec.mode === 'atomic') await discard(paths);
      throw err;
    }
    const produceMs = Date.now() - produceStarted;
    // Checked before publishing, so a bad path reported by produce publishes nothing.
    let outputs: Record<string, string>;
    try {
      outputs = { ...spec.outputs };
      for (const [name, p] of Object.entries(produced.outputs ?? {})) outputs[name] = toRunDirRelative(runDir, p);
    } catch (err) {
      if (spec.mode === 'atomic') await discard(paths);
      throw err;
    }

    // Test-only pauses (activities/faults.ts): a worker killed in the publish window.
    const beat: Heartbeat = (details) => ticker.update(details);
    const publishStarted = Date.now();
    if (spec.mode === 'atomic') {
      try {
        await faultPause(runDir, input.stepId, 'publish', beat);
        for (const [name, staged] of Object.entries(paths)) {
          if (!existsSync(staged))
            throw artifactConflict(finalPaths[name], `the step did not write its declared output '${name}'`);
          await fsyncTree(staged);
        }
        let renamed = 0;
        for (const [name, staged] of Object.entries(paths)) {
          await replaceWithStaged(staged, finalPaths[name]);
          if (++renamed === 1 && Object.keys(paths).length > 1) await faultPause(runDir, input.stepId, 'rename', beat);
        }
      } catch (err) {
        await discard(paths);
        throw err;
      }
    } else {
      await faultPause(runDir, input.stepId, 'publish', beat);
    }
    const publishMs = Date.now() - publishStarted;

    const digestStarted = Date.now();
    const memo = await DigestMemo.open(runDir);
    const recorded: Record<string, RecordedOutput> = {};
    for (const [name, rel] of Object.entries(outputs)) {
      recorded[name] = await recordOutput(runDir, rel, memo, (n) =>
        ticker.update({ ...progressDetails(n, 0, 'bytes'), phase: `digest ${name}` }),
      );
    }
    await memo.save();
    const digestMs = Date.now() - digestStarted;

    await faultPause(runDir, input.stepId, 'manifest', beat);
    const result: StepResult = {
      stepId: input.stepId,
      host: currentHost(),
      cached: false,
      outputs,
      metrics: produced.metrics ?? {},
      cacheKey,
      durationMs: Date.now() - started,
    };
    await writeManifest(runDir, {
      format: MANIFEST_FORMAT,
      step: input.stepId,
      cacheKey,
      keyMaterial: spec.cacheKey,
      inputs,
      mode: spec.mode,
      wmssFlowVersion: wmssFlowVersion(),
      host: result.host,
      outputs: recorded,
      result,
      timings: {
        startedAt: new Date(started).toISOString(),
        finishedAt: new Date().toISOString(),
        produceMs,
        publishMs,
        digestMs,
      },
    });
    return result;
  } finally {
    ticker.stop();
  }
}
