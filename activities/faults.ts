/**
 * Test-only fault hooks (docs/recovery.md): environment variables, read by
 * the worker process, that stop a step at a chosen point so a test can kill the worker, the
 * kernel or the server exactly there. Unset (always, outside the fault tests) they do nothing.
 *
 *   WMSS_FAULT_PAUSE=<stepId>:<point>[,…]   the step's activity blocks at <point>, heartbeating
 *       like a working step, until its worker is killed (or the activity is cancelled):
 *         publish   outputs produced (atomic: staged as `<name>.partial-*`), nothing renamed yet
 *         rename    the first of several outputs renamed into place, the others still staged
 *         manifest  every output in place, the manifest (the commit point) not yet written
 *   WMSS_FAULT_KERNEL=<stepId>:<kind>[,…]   the step's kernel gets WMSS_FAULT=<kind>
 *       (kernels/wmss_kernels/faults.py):
 *         hang                  stops printing progress and sleeps, alive (the stall limit's case)
 *         die-before-complete   SIGKILLs itself while writing its second checkpoint: the files are
 *                               written, the COMPLETE marker is not
 *         nan-loss              training's loss reads NaN from optimizer step 2 on (TrainingDiverged)
 *         die-mid-training      SIGKILLs itself as optimizer step 2 ends (a lost rank)
 *       <stepId> may be `<step>.member-<i>`: member i (> 0) of a multi-node group alone.
 *
 * Each fault fires once per run dir: it leaves a marker file, `<runDir>/.wmss/faults/<stepId>.<point
 * or kind>`, and a step whose marker exists runs normally, so the retry after the kill completes.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { activityCancelled, type Heartbeat } from './store/heartbeat';

export const FAULTS_DIR = '.wmss/faults';
export type PausePoint = 'publish' | 'rename' | 'manifest';

/** The marker a fault leaves when it fires. */
export function faultMarker(runDir: string, stepId: string, what: string): string {
  return path.join(runDir, FAULTS_DIR, `${stepId}.${what}`);
}

/** `<stepId>:<what>` entries of a fault variable that name this step. */
function faultsFor(variable: string, stepId: string): string[] {
  return (process.env[variable] ?? '')
    .split(',')
    .map((entry) => entry.trim().split(':'))
    .filter(([step, what]) => step === stepId && what)
    .map(([, what]) => what);
}

/** WMSS_FAULT_PAUSE: block here, heartbeating, until the worker is killed (once per run dir). */
export async function faultPause(
  runDir: string,
  stepId: string,
  point: PausePoint,
  heartbeat: Heartbeat,
): Promise<void> {
  if (!faultsFor('WMSS_FAULT_PAUSE', stepId).includes(point)) return;
  const marker = faultMarker(runDir, stepId, point);
  mkdirSync(path.dirname(marker), { recursive: true });
  try {
    writeFileSync(marker, `${JSON.stringify({ pid: process.pid, at: new Date().toISOString() })}\n`, { flag: 'wx' });
  } catch {
    return; // fired before: this is the retry
  }
  const cancelled = activityCancelled();
  for (;;) {
    heartbeat({
      done: 0,
      total: 0,
      unit: 'steps',
      phase: `test fault: paused at ${point} until this worker is killed`,
      updatedAt: new Date().toISOString(),
    });
    await Promise.race([new Promise((resolve) => setTimeout(resolve, 2000)), ...(cancelled ? [cancelled] : [])]);
  }
}

/** WMSS_FAULT_KERNEL: the environment that arms the kernel's fault, unless it fired before. */
export function kernelFaultEnv(runDir: string, stepId: string): Record<string, string> {
  const kind = faultsFor('WMSS_FAULT_KERNEL', stepId)[0];
  if (!kind) return {};
  const marker = faultMarker(runDir, stepId, kind);
  return existsSync(marker) ? {} : { WMSS_FAULT: kind, WMSS_FAULT_MARKER: marker };
}
