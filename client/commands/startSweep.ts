/**
 * `wmss sweep <sweep.json>`: read and check a sweep file (pipeline/sweep.ts), make its paths
 * absolute against the current directory (as `wmss start` does for a run config), and start the
 * sweep workflow (workflows/wmssSweep.ts). Every problem is one line `file:line:col: field: message`.
 */
import os from 'node:os';
import path from 'node:path';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { RunConfig, formatConfigIssues } from '../../pipeline/config';
import { applyPreset } from '../../pipeline/presets';
import { WmssRunName, WmssStatus, WmssStep } from '../../pipeline/searchAttributes';
import { checkSweepSpec, type SweepSpec } from '../../pipeline/sweep';
import { SWEEP_WORKFLOW_TYPE, sweepWorkflowIdFor } from '../../pipeline/sweepApi';
import type { SourcePos } from '../jsonSource';
import { absolutize, ConfigFileError, loadRunConfig, readJsonFile, unsafeRunDir } from '../runConfigFile';

const at = (file: string, pos?: SourcePos) => (pos ? `${file}:${pos.line}:${pos.col}` : file);

/** The sweep file as the workflow gets it: base config complete and absolute, sweepDir absolute; or ConfigFileError. */
export function readSweepFile(file: string, base = process.cwd()): SweepSpec {
  const parsed = readJsonFile(file);
  const where = (field: string | null) => {
    let pos: SourcePos | undefined;
    const parts = field ? field.split('.') : [];
    for (let n = parts.length; n > 0 && !pos; n--) pos = parsed.keys.get(parts.slice(0, n).join('.'));
    return at(file, pos ?? { line: 1, col: 1 });
  };
  const raw = parsed.value as Record<string, unknown>;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new ConfigFileError(`${file}: a sweep file is a JSON object (sweepName, sweepDir, config, grid or points)`);
  // `config` may name a run config file instead of holding one
  let baseRaw = raw.config;
  if (typeof baseRaw === 'string') baseRaw = loadRunConfig(path.resolve(base, baseRaw)).raw;
  if (typeof baseRaw !== 'object' || baseRaw === null || Array.isArray(baseRaw))
    throw new ConfigFileError(
      `${where('config')}: config: the base run config (an object, or the path of a run config file)`,
    );
  // the base config alone must be valid: runName and runDir are the sweep's, so stand-ins here
  const checked = RunConfig.safeParse(applyPreset({ runName: 'sweep', runDir: '/', ...baseRaw }));
  if (!checked.success)
    throw new ConfigFileError(
      formatConfigIssues(checked.error)
        .split('\n')
        .map((line) => `${where(`config.${line.split(':')[0]}`)}: config.${line}`)
        .join('\n'),
    );
  const { runName: _n, runDir: _d, ...config } = absolutize(checked.data, base);
  const spec = {
    ...raw,
    config,
    sweepDir: typeof raw.sweepDir === 'string' ? path.resolve(base, raw.sweepDir) : raw.sweepDir,
  };
  let checkedSpec: SweepSpec;
  try {
    checkedSpec = checkSweepSpec(spec).spec;
  } catch (err) {
    const field = (err as { details?: Array<{ field: string | null }> }).details?.[0]?.field ?? null;
    throw new ConfigFileError(`${where(field)}: ${(err as Error).message.replace(/^invalid sweep: /, '')}`);
  }
  const why = unsafeRunDir(checkedSpec.sweepDir, os.homedir(), { parentOfRuns: true });
  if (why) throw new ConfigFileError(`${where('sweepDir')}: sweepDir: ${why}`);
  return checkedSpec;
}

export async function startSweep(client: Client, spec: SweepSpec) {
  const workflowId = sweepWorkflowIdFor(spec.sweepName);
  const { points } = checkSweepSpec(spec);
  try {
    return await client.workflow.start(SWEEP_WORKFLOW_TYPE, {
      taskQueue: points[0].config.placement.controlQueue,
      workflowId,
      args: [spec],
      staticSummary: `WMSS sweep ${spec.sweepName}: ${points.length} points`,
      typedSearchAttributes: [
        { key: WmssRunName, value: spec.sweepName },
        { key: WmssStatus, value: 'running' },
        { key: WmssStep, value: '' },
      ],
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError)
      throw new Error(`sweep ${workflowId} is already running; \`wmss status ${workflowId}\` shows it`);
    throw err;
  }
}
