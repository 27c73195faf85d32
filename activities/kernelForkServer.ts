/**
 * The kernel fork server of a GPU worker (docs/kernel-launch.md): one Python process that
 * imports torch, transformers and the kernels once and forks a kernel per single-process job, so
 * that a kernel starts in milliseconds instead of seconds of imports. The bridge still spawns a
 * process of its own per kernel, in its own process group: the fork client
 * (kernels/wmss_kernels/forkclient.py), which stands for the forked kernel (pipes, signals, exit
 * status) and becomes the plain `python -m wmss_kernels` when the server is not there or refuses.
 *
 * One server per worker process, shared by its GPU workers and stopped when the last of them has
 * stopped. WMSS_KERNEL_FORK_SERVER=0 turns it off.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { KERNELS_DIR } from './repoPaths';
import { kernelPythonEnv, type KernelCommand } from './kernelLaunch';

const CLIENT_SCRIPT = path.join(KERNELS_DIR, 'wmss_kernels', 'forkclient.py');
/** A unix socket's path must fit in sockaddr_un (108 bytes on Linux, with its terminating NUL). */
const MAX_SOCKET_PATH = 100;

interface ForkServer {
  python: string;
  dir: string;
  socket: string;
  child: ChildProcess;
  listening: boolean;
  exited: boolean;
  stopping: boolean;
  users: number;
}

let server: ForkServer | undefined;

/** On unless WMSS_KERNEL_FORK_SERVER is 0, false, off or no. */
export function forkServerEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return !/^(0|false|off|no)$/i.test((env.WMSS_KERNEL_FORK_SERVER ?? '').trim());
}

function start(python: string): ForkServer | undefined {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-fork-'));
  const socket = path.join(dir, 'kernels.sock');
  if (socket.length > MAX_SOCKET_PATH) {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  const child = spawn(python, ['-m', 'wmss_kernels.forkserver', '--socket', socket], {
    // its own process group: a terminal's ^C goes to the worker, which stops the server itself
    detached: true,
    // stdin: the liveness pipe (closed when this process ends, however it ends)
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...kernelPythonEnv() },
  });
  const me: ForkServer = { python, dir, socket, child, listening: false, exited: false, stopping: false, users: 0 };
  const stderr: string[] = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    if (line === 'listening') me.listening = true;
  });
  readline.createInterface({ input: child.stderr }).on('line', (line) => stderr.push(line) > 20 && stderr.shift());
  const gone = (why: string) => {
    if (me.exited) return;
    me.exited = true;
    me.listening = false;
    if (server === me) server = undefined;
    rmSync(dir, { recursive: true, force: true });
    if (!me.stopping)
      console.warn(
        `wmss: the kernel fork server stopped (${why}); kernels start as plain processes${stderr.length ? `:\n${stderr.join('\n')}` : ''}`,
      );
  };
  child.once('error', (err) => gone(err.message));
  child.once('exit', (code, signal) => gone(signal ? `signal ${signal}` : `exit code ${code}`));
  // neither the server nor its pipes keep this process alive; its exit closes the liveness pipe
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr])
    (stream as unknown as { unref?: () => void }).unref?.();
  return me;
}

function stop(me: ForkServer): void {
  me.stopping = true;
  if (server === me) server = undefined;
  if (!me.exited) me.child.kill('SIGTERM'); // it ends once its kernels are gone, then the dir goes
}

/**
 * Starts the fork server of this process (if enabled and not running) for kernels run with
 * `python`; returns the function that gives it up again: the server stops when the last user
 * has given it up.
 */
export function acquireKernelForkServer(python: string, env: NodeJS.ProcessEnv = process.env): () => void {
  if (!forkServerEnabled(env)) return () => undefined;
  if (!server || server.python !== python) server = start(python);
  const me = server;
  if (!me) return () => undefined;
  me.users += 1;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    me.users -= 1;
    if (me.users === 0) stop(me);
  };
}

/**
 * The command that starts a kernel: through the fork client when this process has a fork server
 * for `python` that listens and the kernel is one plain process; `command` itself otherwise
 * (torchrun, no server, another interpreter).
 */
export function viaForkServer(python: string, command: KernelCommand, processes: number): KernelCommand {
  const me = server;
  if (processes > 1 || !me || !me.listening || me.python !== python || command.file !== python) return command;
  return { file: python, args: ['-I', '-S', CLIENT_SCRIPT, me.socket, python, ...command.args] };
}

/** The running server's pid and socket (tests and `wmss` diagnostics); undefined when none. */
export function kernelForkServerInfo(): { pid: number | undefined; socket: string; listening: boolean } | undefined {
  return server && { pid: server.child.pid, socket: server.socket, listening: server.listening };
}
