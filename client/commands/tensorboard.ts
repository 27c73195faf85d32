/**
 * `wmss tensorboard <run>`: the TensorBoard of a run, whose kernels write their event files under
 * `<runDir>/tensorboard/<step>` (docs/tracking.md). Starts the checkout's tensorboard when it is
 * installed there, else prints the command that opens them.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { VENV_BIN } from '../../activities/repoPaths';
import { TENSORBOARD_DIR } from '../../pipeline/trackingConfig';

export interface TensorboardPlan {
  logdir: string;
  /** The command line, for the user to run (quoted for a POSIX shell). */
  command: string;
  /** The tensorboard executable when this checkout has one. */
  executable?: string;
}

const quote = (s: string) => (/^[\w./:@=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

export function tensorboardPlan(runDir: string, port: number): TensorboardPlan {
  const logdir = path.join(runDir, TENSORBOARD_DIR);
  const installed = path.join(VENV_BIN, 'tensorboard');
  const executable = existsSync(installed) ? installed : undefined;
  return {
    logdir,
    command: `${quote(executable ?? 'tensorboard')} --logdir ${quote(logdir)} --port ${port} --bind_all`,
    executable,
  };
}

/** Runs tensorboard until it exits (Ctrl-C); resolves with its exit code. */
export function startTensorboard(plan: TensorboardPlan, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(plan.executable!, ['--logdir', plan.logdir, '--port', String(port), '--bind_all'], {
      stdio: 'inherit',
    });
    child.on('error', reject);
    child.on('exit', (code) => resolve(code ?? 1));
  });
}
