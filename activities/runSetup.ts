/**
 * Activity `setUpRun`: before the first step of a run whose config names a Hugging Face model id
 * or an MLflow / W&B tracker. One Python process (wmss_kernels/run_setup.py) on a GPU worker (the
 * workers with Python and the Hugging Face cache) resolves the ids to snapshot directories of the
 * cache, downloading when the network allows, and creates or finds again the tracking runs.
 *
 * HF_TOKEN stays in the worker's environment: it is neither in the input nor in the result, so it
 * never enters workflow history. A model that cannot be had is a non-retryable failure naming the
 * config key, the id, the revision and the command that fetches it; a tracker that cannot be
 * reached is only reported (training never waits for a tracker).
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { RunConfig } from '../pipeline/config';
import { ErrorTypes } from '../pipeline/errors';
import { trackingJob } from '../pipeline/trackingConfig';
import type { ResolvedModel, RunSetup } from '../pipeline/runSetupTypes';
import { pythonExecutable } from './kernelBridge';
import { kernelPythonEnv } from './kernelLaunch';
import { realRunDir } from './store/runDirPaths';

interface PythonOutcome {
  ok: boolean;
  error_type?: string;
  message?: string;
  id?: string;
  revision?: string;
  commit?: string;
  path?: string;
}

/** The config flattened to dotted keys: the trackers' parameters. */
export function flatParams(value: unknown, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatParams(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (value !== undefined) {
    out[prefix] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  return out;
}

function runPython(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      pythonExecutable(),
      ['-m', 'wmss_kernels.run_setup', file],
      { env: { ...process.env, ...kernelPythonEnv() }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const last = stdout.trim().split('\n').pop() ?? '';
        if (err && !last.startsWith('{'))
          reject(new Error(`run set-up failed: ${err.message}\n${stderr.slice(-2000)}`));
        else resolve(last);
      },
    );
  });
}

function modelFailure(key: string, ref: string, out: PythonOutcome): ApplicationFailure {
  const type =
    out.error_type === 'InvalidInput'
      ? ErrorTypes.InvalidInput
      : out.error_type === 'InvalidConfig'
        ? ErrorTypes.InvalidConfig
        : ErrorTypes.ModelUnavailable;
  return ApplicationFailure.create({
    type,
    nonRetryable: true,
    message: `${key} ${ref}: ${out.message ?? 'cannot be resolved'}`,
    details: [{ file: null, line: null, field: key }],
  });
}

export function runSetupActivities() {
  return {
    async setUpRun(input: { config: RunConfig; models: Record<string, string> }): Promise<RunSetup> {
      const { config } = input;
      const runDir = realRunDir(config.runDir);
      const tracking = trackingJob(config.tracking, runDir, config.runName, 'setup');
      const file = path.join(runDir, '.wmss', 'run-setup.json');
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(
        file,
        JSON.stringify({
          models: input.models,
          run_name: config.runName,
          params: flatParams(config),
          tracking: { mlflow: tracking.mlflow, wandb: tracking.wandb },
        }),
      );
      const answer = JSON.parse(await runPython(file)) as {
        models: Record<string, PythonOutcome>;
        trackers: Record<string, { run_id?: string; url?: string | null; error?: string }>;
      };
      const models: Record<string, ResolvedModel> = {};
      for (const [key, out] of Object.entries(answer.models)) {
        if (!out.ok) throw modelFailure(key, input.models[key], out);
        models[key] = { id: out.id!, revision: out.revision!, commit: out.commit!, path: out.path! };
      }
      const trackers: RunSetup['trackers'] = {};
      for (const [name, t] of Object.entries(answer.trackers))
        trackers[name as 'mlflow' | 'wandb'] = { runId: t.run_id, url: t.url, error: t.error };
      return { models, trackers };
    },
  };
}
