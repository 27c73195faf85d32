/**
 * How a kernel is started and stopped: one Python process, or torchrun with one rank per device
 * for training on several GPUs (docs/kernel-protocol.md, "Several devices"). torchrun puts every rank in a session of its own, so
 * a signal to the kernel's process group reaches torchrun but not the ranks; each kernel process
 * therefore records its pid under a per-attempt directory (WMSS_PID_DIR, see wmss_kernels/__main__.py)
 * and the bridge signals the ranks directly.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { GroupMember } from '../pipeline/groups';
import { KERNELS_DIR } from './repoPaths';

export interface KernelCommand {
  file: string;
  args: string[];
}

/**
 * `python -m wmss_kernels <verb> --job <file>`, or for `processes` > 1 the same module under
 * torchrun (`python -m torch.distributed.run` is torchrun, run by the same interpreter):
 * `--standalone` picks a free rendezvous port on this host, so several workers of one host can
 * train at the same time. A member of a multi-node group (pipeline/groups.ts) always runs under
 * torchrun, even with one local rank: `--nnodes N --node-rank i` and the rendezvous store of
 * member 0 (torchrun's static rendezvous: node rank i holds global ranks i × processes …, so
 * global rank 0, the one that reports progress and publishes checkpoints, is on member 0).
 */
export function kernelCommand(
  python: string,
  verb: string,
  jobFile: string,
  processes = 1,
  group?: GroupMember,
): KernelCommand {
  const kernel = ['-m', 'wmss_kernels', verb, '--job', jobFile];
  if (group) {
    return {
      file: python,
      args: [
        '-m',
        'torch.distributed.run',
        '--nnodes',
        String(group.count),
        '--node-rank',
        String(group.index),
        '--nproc-per-node',
        String(processes),
        '--rdzv-endpoint',
        `${group.address}:${group.port}`,
        '--rdzv-conf',
        `join_timeout=${group.joinTimeoutS}`,
        '--max-restarts',
        '0',
        ...kernel,
      ],
    };
  }
  if (processes <= 1) return { file: python, args: kernel };
  return {
    file: python,
    args: [
      '-m',
      'torch.distributed.run',
      '--standalone',
      '--nnodes',
      '1',
      '--nproc-per-node',
      String(processes),
      ...kernel,
    ],
  };
}

/** What a kernel process gets on top of the worker's environment (the fork server too: it forks kernels). */
export function kernelPythonEnv(): { PYTHONPATH: string; PYTHONUNBUFFERED: string } {
  return {
    PYTHONPATH: [KERNELS_DIR, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
    PYTHONUNBUFFERED: '1',
  };
}

function procStart(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(')').pop()!.trim().split(/\s+/)[19];
  } catch {
    return undefined;
  }
}

/** Pids recorded under `pidDir` whose process is still the one that wrote the file. */
export function recordedPids(pidDir: string): number[] {
  let names: string[];
  try {
    names = readdirSync(pidDir);
  } catch {
    return [];
  }
  return names
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .filter((pid) => {
      let recorded: string;
      try {
        recorded = readFileSync(path.join(pidDir, String(pid)), 'utf8').trim();
      } catch {
        return false;
      }
      const now = procStart(pid);
      // without /proc (not Linux) trust the file; with it, a different start time is a recycled pid
      return recorded === '' || now === undefined || now === recorded;
    });
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/**
 * SIGTERM: to the ranks only when there are several (torchrun itself would SIGKILL them 30 s
 * after forwarding a SIGTERM, cutting a large checkpoint short; the ranks agree to stop, save
 * and exit, and torchrun follows), else to the kernel's process group.
 * SIGKILL: to everything, the process group and every recorded rank with its own group.
 */
export function signalKernel(child: ChildProcess, pidDir: string, signal: NodeJS.Signals, processes: number): void {
  const ranks = recordedPids(pidDir);
  if (signal === 'SIGTERM' && processes > 1 && ranks.length > 0) {
    ranks.forEach((pid) => kill(pid, signal));
    return;
  }
  if (child.pid !== undefined) kill(-child.pid, signal);
  for (const pid of ranks) {
    kill(-pid, signal); // a torchrun rank leads its own session and group
    kill(pid, signal);
  }
}

export function removePidDir(pidDir: string): void {
  rmSync(pidDir, { recursive: true, force: true });
}
