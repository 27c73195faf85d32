/**
 * Runs one Python kernel (`python -m wmss_kernels <verb> --job <file>`) for an activity:
 * its own process group, JSON-lines progress turned into heartbeats, cancellation as
 * SIGTERM → grace → SIGKILL, exit codes mapped to the typed failures of pipeline/errors.ts.
 * No kernel process outlives the call. With `processes` > 1 the kernel runs under torchrun, one
 * rank per device (activities/kernelLaunch.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes, NON_RETRYABLE_ERROR_TYPES, type ErrorType } from '../pipeline/errors';
import { KERNEL_JOBS, KernelEvent, KernelExit, type KernelJob, type KernelVerb } from '../pipeline/kernelJobs';
import type { StepProgress } from '../pipeline/steps';
import { VENV_BIN } from './repoPaths';
import type { GroupMember } from '../pipeline/groups';
import { kernelCommand, kernelPythonEnv, recordedPids, removePidDir, signalKernel } from './kernelLaunch';
import { SaveRequests, type RunningKernel } from './kernelSaveRequests';
import { viaForkServer } from './kernelForkServer';

/** Where the worker finds its Python: WMSS_PYTHON, else the project's .venv, else python3 on PATH. */
export function pythonExecutable(): string {
  if (process.env.WMSS_PYTHON) return process.env.WMSS_PYTHON;
  const venv = path.join(VENV_BIN, 'python');
  return existsSync(venv) ? venv : 'python3';
}

/** Start-up allowance of a kernel before its first protocol line (see KernelRunOptions.startupMs). */
export const STARTUP_MS = 10 * 60_000;

export interface KernelRunOptions {
  /** Absolute path of the job file to write. */
  jobFile: string;
  /** Environment for the kernel on top of the worker's (CUDA_VISIBLE_DEVICES comes from the GPU worker). */
  env?: Record<string, string>;
  /** A kernel alive but silent for this long after a protocol line is killed and reported as hung. */
  stallMs: number;
  /**
   * Before its first protocol line (Python and torch imports, model and data loading, slow on a
   * busy host) a kernel has max(stallMs, startupMs); default STARTUP_MS.
   */
  startupMs?: number;
  /**
   * Time between SIGTERM and SIGKILL on cancellation; training uses it to save a checkpoint. A
   * function gets the cancellation (a worker shutdown has its own grace: workers/shutdownGrace.ts).
   */
  killGraceMs?: number | ((cancellation: unknown) => number);
  /** Called once the kernel runs, with its save-on-request handle (activities/kernelSaveRequests.ts). */
  onStarted?: (kernel: RunningKernel) => void;
  /** What a cancelled kernel throws (default the cancellation itself), given its last progress. */
  mapCancellation?: (cancellation: unknown, progress: StepProgress) => unknown;
  /** Called with the latest progress at least every `heartbeatEveryMs`, even when the kernel is quiet. */
  onHeartbeat?: (progress: StepProgress) => void;
  heartbeatEveryMs?: number;
  /** Rejects when the activity is cancelled (Context.current().cancelled). */
  cancelled?: Promise<never>;
  /** Processes (ranks) under torchrun, one per device; 1 (default) = a plain Python process. */
  processes?: number;
  /** A member of a multi-node group: torchrun joins member 0's rendezvous (kernelLaunch.ts). */
  group?: GroupMember;
  /**
   * Job field → the config key it was built from (`max_length` → `sft.maxLength`): a kernel error
   * about a job field then names the key the user wrote, not the internal job file.
   */
  configKeys?: Record<string, string>;
}

export interface KernelOutcome {
  outputs: Record<string, string>;
  metrics: Record<string, number | string>;
  lastCheckpoint?: { path: string; step: number };
}

/**
 * The failure type of each exit code; the error line's type decides when it is one of these
 * (torchrun hides a rank's exit code behind its own 1). Anything else is a crash.
 */
const TYPE_OF_EXIT: Record<number, ErrorType> = {
  [KernelExit.invalidInput]: ErrorTypes.InvalidInput,
  [KernelExit.outOfMemory]: ErrorTypes.KernelOutOfMemory,
  [KernelExit.terminated]: ErrorTypes.KernelTerminated,
  [KernelExit.diverged]: ErrorTypes.TrainingDiverged,
  [KernelExit.diskFull]: ErrorTypes.InsufficientDisk,
  [KernelExit.notWritable]: ErrorTypes.NotWritable,
  [KernelExit.rankLost]: ErrorTypes.RankLost,
};
const KERNEL_ERROR_TYPES = new Set<string>(Object.values(TYPE_OF_EXIT));

type KernelErrorLine = Extract<KernelEvent, { type: 'error' }>;

/**
 * The typed failure of a kernel that exited non-zero (or was killed by `signal`). A job field the
 * error names is translated to its config key; where the error names the job file itself, the
 * key replaces it (the job file is internal). Permanent types are non-retryable
 * (NON_RETRYABLE_ERROR_TYPES), as everywhere else.
 */
export function kernelFailure(
  verb: string,
  exit: { code: number | null; signal: NodeJS.Signals | null },
  error: KernelErrorLine | undefined,
  ctx: {
    logFile: string;
    jobFile?: string;
    configKeys?: Record<string, string>;
    progress?: StepProgress;
    rootCause?: { rank: number; exitcode: number };
  },
): ApplicationFailure {
  const where = `log: ${ctx.logFile}`;
  const rootCause = ctx.rootCause;
  let type: ErrorType =
    error && KERNEL_ERROR_TYPES.has(error.error_type)
      ? (error.error_type as ErrorType)
      : (TYPE_OF_EXIT[exit.code ?? -1] ?? ErrorTypes.KernelCrashed);
  // no error line, but torchrun saw a rank die of a signal: that rank was lost
  if (!error && rootCause && rootCause.exitcode < 0) type = ErrorTypes.RankLost;
  const nonRetryable = NON_RETRYABLE_ERROR_TYPES.includes(type);
  const configKey = error?.field ? ctx.configKeys?.[error.field] : undefined;
  const aboutJob = error !== undefined && (!error.file || error.file === ctx.jobFile);
  let text = error ? error.message : `exit code ${exit.code}${exit.signal ? `, signal ${exit.signal}` : ''}`;
  let file = error?.file ?? undefined;
  if (error && configKey && aboutJob) {
    text = `${configKey}: ${error.reason ?? error.message}`;
    file = undefined;
  }
  const location = { file: file ?? null, line: error?.line ?? null, field: configKey ?? error?.field ?? null };
  switch (type) {
    case ErrorTypes.KernelOutOfMemory:
      return ApplicationFailure.create({
        type,
        message: `${verb} kernel ran out of memory: ${text} (${where})`,
        details: [ctx.progress],
      });
    case ErrorTypes.KernelTerminated:
      return ApplicationFailure.create({
        type,
        message: `${verb} kernel stopped on SIGTERM after saving its state (${where})`,
        details: [ctx.progress],
      });
    case ErrorTypes.RankLost: {
      const rank = (error as { rank?: number } | undefined)?.rank ?? rootCause?.rank;
      const how = rootCause && rootCause.rank === rank ? `, ${describeExit(rootCause.exitcode)}` : '';
      return ApplicationFailure.create({
        type,
        message: `${verb} kernel lost rank ${rank ?? '?'}${how}; the other ranks stopped: ${text} (${where})`,
        details: [{ ...ctx.progress, rank, exitcode: rootCause?.exitcode }],
      });
    }
    case ErrorTypes.KernelCrashed:
      return ApplicationFailure.create({
        type,
        message: `${verb} kernel crashed: ${text} (${where})\n${tailOf(ctx.logFile, 800)}`,
        details: [ctx.progress],
      });
    default:
      return ApplicationFailure.create({
        type,
        nonRetryable,
        message: `${text} (${where})`,
        details: [{ ...location, ...(error?.details ?? {}) }],
      });
  }
}

/**
 * torchrun's failure summary ("Root Cause" block): the rank that failed first and its exit code
 * (negative: the signal). It speaks for a lost rank when no rank could print the error line
 * (rank 0 itself was the one killed: only rank 0 prints protocol lines).
 */
export function torchrunRootCause(logTail: string): { rank: number; exitcode: number } | undefined {
  const block = logTail.split('Root Cause').pop();
  if (block === undefined || block === logTail) return undefined;
  const rank = /rank\s*:\s*(\d+)/.exec(block);
  const exit = /exitcode\s*:\s*(-?\d+)/.exec(block);
  return rank && exit ? { rank: Number(rank[1]), exitcode: Number(exit[1]) } : undefined;
}

function describeExit(code: number): string {
  return code < 0
    ? `signal ${-code}${code === -9 ? ' (SIGKILL)' : code === -15 ? ' (SIGTERM)' : ''}`
    : `exit code ${code}`;
}

function tailOf(file: string, bytes = 2000): string {
  try {
    const text = readFileSync(file, 'utf8');
    return text.slice(-bytes);
  } catch {
    return '';
  }
}

export async function runKernel<V extends KernelVerb>(
  verb: V,
  job: KernelJob<V>,
  opts: KernelRunOptions,
): Promise<KernelOutcome> {
  const checked = KERNEL_JOBS[verb].safeParse(job);
  if (!checked.success) {
    // A job we build ourselves failing its schema is a bug in wmss-flow, not bad user input.
    throw ApplicationFailure.create({
      type: ErrorTypes.WorkerMisconfigured,
      nonRetryable: true,
      message: `internal: ${verb} job does not match its schema: ${checked.error.message}`,
    });
  }
  const logFile = (job as { log_file: string }).log_file;
  mkdirSync(path.dirname(opts.jobFile), { recursive: true });
  mkdirSync(path.dirname(logFile), { recursive: true });
  // Unset optional fields are left out: the kernel reads them as the job schema's default, or null.
  writeFileSync(
    opts.jobFile,
    JSON.stringify(checked.data, (_key, value) => (value === null ? undefined : value), 2),
  );

  const python = pythonExecutable();
  // a group member runs under torchrun even with one local rank: signalled and launched as several
  const processes = opts.group ? Math.max(2, opts.processes ?? 1) : (opts.processes ?? 1);
  // through the worker's fork server when it runs (activities/kernelForkServer.ts)
  const command = viaForkServer(
    python,
    kernelCommand(python, verb, opts.jobFile, opts.processes ?? 1, opts.group),
    processes,
  );
  const pidDir = `${opts.jobFile}.pids`;
  removePidDir(pidDir);
  const child = spawn(command.file, command.args, {
    detached: true, // own process group: one signal reaches the kernel and its helpers
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {
      ...process.env,
      ...opts.env,
      ...kernelPythonEnv(),
      WMSS_PID_DIR: pidDir,
    },
  });
  const killGroup = (_child: ChildProcess, signal: NodeJS.Signals) => signalKernel(child, pidDir, signal, processes);
  const log = createWriteStream(logFile, { flags: 'a' });
  // SIGUSR1 to the kernel's recorded processes (every rank) asks for a checkpoint now
  const saves = new SaveRequests(() => recordedPids(pidDir));
  opts.onStarted?.(saves.handle);
  child.stderr.pipe(log, { end: false });

  let progress: StepProgress = { done: 0, total: 0, unit: 'samples', updatedAt: new Date().toISOString(), logFile };
  let lastActivity = Date.now();
  let spoke = false; // a protocol line came: from then on the stall limit applies
  let result: KernelOutcome | undefined;
  let kernelError: KernelErrorLine | undefined;
  let malformed: string | undefined; // a protocol line the schema refused: a kernel/bridge mismatch

  const lines = readline.createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      log.write(`[stdout, not a protocol line] ${line}\n`);
      return;
    }
    const parsed = KernelEvent.safeParse(json);
    if (!parsed.success) {
      const type = (json as { type?: unknown } | null)?.type;
      log.write(`[stdout, a protocol line that does not match the protocol] ${line}\n`);
      if (typeof type === 'string')
        malformed = `its ${type} line does not match the protocol (${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`;
      return;
    }
    const event: KernelEvent = parsed.data;
    lastActivity = Date.now();
    spoke = true;
    const now = new Date().toISOString();
    if (event.type === 'progress') {
      progress = {
        ...progress,
        done: event.done,
        total: event.total,
        unit: event.unit,
        loss: event.loss ?? undefined,
        lr: event.lr ?? undefined,
        tokensPerS: event.tokens_per_s ?? undefined,
        detail: event.detail ?? undefined,
        updatedAt: now,
      };
    } else if (event.type === 'checkpoint') {
      progress = { ...progress, lastCheckpoint: { path: event.path, step: event.step }, updatedAt: now };
      saves.saved({ path: event.path, step: event.step });
    } else if (event.type === 'result') {
      const metrics = Object.fromEntries(
        Object.entries(event.metrics).filter((kv): kv is [string, number | string] => kv[1] !== null),
      );
      result = { outputs: event.outputs, metrics, lastCheckpoint: progress.lastCheckpoint };
    } else {
      kernelError = event;
    }
    opts.onHeartbeat?.(progress);
  });

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const linesDone = new Promise<void>((resolve) => lines.once('close', resolve));

  let stalled = false;
  let cancelError: unknown;
  const startupMs = Math.max(opts.stallMs, opts.startupMs ?? STARTUP_MS);
  const timer = setInterval(() => {
    opts.onHeartbeat?.(progress);
    saves.resend(); // a request made before the kernel recorded its pid goes out now
    const limit = !spoke ? startupMs : opts.stallMs;
    if (Date.now() - lastActivity > limit && !stalled) {
      stalled = true;
      killGroup(child, 'SIGKILL');
    }
  }, opts.heartbeatEveryMs ?? 5000);

  let graceTimer: NodeJS.Timeout | undefined;
  opts.cancelled?.catch((err) => {
    cancelError = err;
    killGroup(child, 'SIGTERM');
    const grace = typeof opts.killGraceMs === 'function' ? opts.killGraceMs(err) : opts.killGraceMs;
    graceTimer = setTimeout(() => killGroup(child, 'SIGKILL'), grace ?? 120_000);
  });

  let exit: { code: number | null; signal: NodeJS.Signals | null };
  try {
    exit = await exited;
    await linesDone;
  } catch (err) {
    throw ApplicationFailure.create({
      type: ErrorTypes.WorkerMisconfigured,
      nonRetryable: true,
      message: `cannot start the kernel with ${python}: ${(err as Error).message}. Run scripts/setup-python.sh or set WMSS_PYTHON.`,
    });
  } finally {
    clearInterval(timer);
    if (graceTimer) clearTimeout(graceTimer);
    saves.ended(`the ${verb} kernel ended before it saved the requested checkpoint`);
    // Whatever happened, leave no process of this kernel behind: its group and every rank.
    killGroup(child, 'SIGKILL');
    removePidDir(pidDir);
    await new Promise<void>((resolve) => log.end(resolve));
  }

  // a CancelledFailure, or what the caller makes of it (a worker shutdown: activities/workerShutdown.ts)
  if (cancelError !== undefined) throw (opts.mapCancellation?.(cancelError, progress) ?? cancelError) as Error;
  const where = `log: ${logFile}`;
  if (stalled) {
    const silentS = Math.round((!spoke ? startupMs : opts.stallMs) / 1000);
    const when = !spoke ? 'printed nothing since it started' : 'printed no progress';
    throw ApplicationFailure.create({
      type: ErrorTypes.KernelStalled,
      message: `${verb} kernel ${when} for ${silentS} s and was killed (${where})`,
      details: [progress],
    });
  }
  if (exit.code === KernelExit.ok) {
    if (result) return result;
    const why = malformed ?? 'without a result line';
    throw ApplicationFailure.create({
      type: ErrorTypes.KernelCrashed,
      message: `${verb} kernel exited 0 ${malformed ? `but ${why}` : why} (${where})`,
    });
  }
  const rootCause = processes > 1 ? torchrunRootCause(tailOf(logFile, 20_000)) : undefined;
  throw kernelFailure(verb, exit, kernelError, {
    logFile,
    jobFile: opts.jobFile,
    configKeys: opts.configKeys,
    progress,
    rootCause,
  });
}
