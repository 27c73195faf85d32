/**
 * What the fault tests (faults.test.ts, serverFaults.test.ts) and the recovery benchmark (bench/recovery.ts) share:
 * workers as processes of their own that can be SIGKILLed like a lost machine, the kernels'
 * pids, checkpoints on disk, digests of a run's deterministic outputs, and what a run's history
 * says about each step's attempts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import * as A from '../pipeline/artifacts';
import type { RunConfig } from '../pipeline/config';
import { recordedPids } from '../activities/kernelLaunch';
import { REPO_ROOT } from '../activities/repoPaths';
import { sha256File } from '../activities/store/digest';
import { completeCheckpoints } from '../activities/store/diskSpace';

export type WorkerKind = 'control' | 'gpu';

/**
 * A `wmss worker control|gpu` process (the compiled entry points, which `npx tsc -p .` builds) on
 * the queues of one run, in a process group of its own. `restart` starts a fresh one.
 */
export class WorkerProcess {
  child!: ChildProcess;
  /** Pids of every process this object started, oldest first. */
  readonly pids: number[] = [];
  /** The log of the current process (stdout and stderr). */
  logFile!: string;
  private exited!: Promise<void>;

  constructor(
    readonly kind: WorkerKind,
    readonly opts: {
      address: () => string;
      queues: { control: string; gpu: string };
      logDir: string;
      env?: Record<string, string>;
    },
  ) {
    this.start();
  }

  get pid(): number {
    return this.child.pid!;
  }

  start(): void {
    const args =
      this.kind === 'gpu'
        ? ['--gpus', 'cpu', '--threads', '1', '--gpu-queue', this.opts.queues.gpu]
        : ['--control-queue', this.opts.queues.control];
    mkdirSync(this.opts.logDir, { recursive: true });
    this.logFile = path.join(
      this.opts.logDir,
      `${this.kind}-${this.opts.queues[this.kind]}-${this.pids.length + 1}.log`,
    );
    const log = openSync(this.logFile, 'a');
    this.child = spawn(process.execPath, [path.join(REPO_ROOT, 'dist', 'workers', `${this.kind}.js`), ...args], {
      env: { ...process.env, TEMPORAL_ADDRESS: this.opts.address(), ...this.opts.env },
      detached: true, // its own group: a kill takes the worker as a lost machine would
      stdio: ['ignore', log, log],
    });
    this.pids.push(this.child.pid!);
    const child = this.child;
    this.exited = new Promise((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve()),
    );
  }

  /** Resolves once the current process polls its queues (it prints `wmss <kind> worker … serving …`). */
  async ready(timeoutMs = 120_000): Promise<void> {
    const file = this.logFile;
    await waitUntil(
      `the ${this.kind} worker to start (${file})`,
      () => {
        if (this.child.exitCode !== null || this.child.signalCode !== null)
          throw new Error(`the ${this.kind} worker exited: ${readFileSync(file, 'utf8').slice(-2000)}`);
        return existsSync(file) && readFileSync(file, 'utf8').includes(`wmss ${this.kind} worker`);
      },
      timeoutMs,
      50,
    );
  }

  /** SIGKILL the worker's process group (kernels run in groups of their own and are not in it). */
  async kill(): Promise<void> {
    try {
      process.kill(-this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await this.exited;
  }

  async restart(): Promise<void> {
    await this.kill();
    this.start();
  }
}

/** Pids of the kernel processes of one attempt of a step, from the bridge's pid dir. */
export function kernelPids(runDir: string, stepId: string, attempt: number): number[] {
  return recordedPids(path.join(runDir, A.JOBS_DIR, `${stepId}.attempt-${attempt}.json.pids`));
}

/** Single-letter state of a process (R, S, Z, …), or undefined when there is none. */
export function processState(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(')').pop()!.trim()[0];
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie (a killed orphan may stay a zombie until the container's init reaps it). */
export function processAlive(pid: number): boolean {
  const state = processState(pid);
  return state !== undefined && state !== 'Z';
}

/** Live (non-zombie) processes whose process group is `pgid`. */
export function liveGroupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const fields = readFileSync(`/proc/${name}/stat`, 'utf8').split(')').pop()!.trim().split(/\s+/);
      // after the command: state ppid pgrp …
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export function killPids(pids: number[], signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone
    }
  }
}

/** The newest complete checkpoint's step (activities/store/diskSpace.ts: with COMPLETE) under a training output dir; 0 without one. */
export async function newestCheckpoint(dir: string): Promise<number> {
  return (await completeCheckpoints(dir)).at(-1)?.step ?? 0;
}

export async function waitUntil(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out.sort();
}

/**
 * sha256 of every deterministic output of a finished run, by path relative to the run dir: the
 * entropy files, merged file, sample weights, resample indices and stats, the snapshot m0, the
 * weights and optimizer state of both final training checkpoints, the fused and the extracted model.
 * (Not compared: logs, trainer_state.json with its tokens/s, evaluation timings.)
 */
export async function deterministicDigests(config: RunConfig): Promise<Record<string, string>> {
  const run = (rel: string) => path.join(config.runDir, rel);
  const files = [
    A.ENTROPY_0,
    A.ENTROPY_1,
    A.ENTROPY_MERGED,
    A.SAMPLE_WEIGHTS,
    A.RESAMPLED_POSITIONS,
    A.RESAMPLE_STATS,
  ].map(run);
  for (const dir of [A.STAGE0_DIR, A.FUSED_INIT_DIR, A.extractedDir(config)]) files.push(...filesUnder(run(dir)));
  for (const [dir, t] of [
    [A.STAGE1_DIR, config.sft],
    [A.stage3Dir(config), config.joint],
  ] as const) {
    const final = run(`${dir}/checkpoint-${t.maxSteps}`);
    for (const f of ['model.safetensors', 'optimizer.pt', 'scheduler.pt', 'rng.pt']) files.push(path.join(final, f));
  }
  const out: Record<string, string> = {};
  for (const f of files) out[path.relative(config.runDir, f)] = `${statSync(f).size}:${await sha256File(f)}`;
  return out;
}

export interface ActivityRecord {
  /** Attempt of the last start (earlier attempts leave no event of their own; their last failure is on this one). */
  attempt: number;
  /** Identity of the worker that took the last attempt, e.g. gpu[cpu]@host/1234. */
  startedBy?: string;
  /** The failure before the last attempt: an ApplicationFailure type (KernelCrashed, …) or a timeout (HEARTBEAT). */
  lastFailure?: string;
  /** When the activity was scheduled and when it closed (ms since the epoch). */
  scheduledAt: number;
  closedAt?: number;
  completed: number;
  failed: number;
  cancelled: number;
  timedOut: number;
}

/** Per activity id (= step id): what the history records of its attempts and outcomes. */
export async function activityRecords(handle: WorkflowHandle): Promise<Record<string, ActivityRecord>> {
  const events = (await handle.fetchHistory()).events ?? [];
  const byScheduled = new Map<string, string>();
  const out: Record<string, ActivityRecord> = {};
  const rec = (scheduledEventId: unknown) => out[byScheduled.get(String(scheduledEventId))!];
  for (const e of events) {
    const at = Number(e.eventTime?.seconds ?? 0) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6);
    const closed =
      e.activityTaskCompletedEventAttributes ??
      e.activityTaskFailedEventAttributes ??
      e.activityTaskCanceledEventAttributes ??
      e.activityTaskTimedOutEventAttributes;
    if (closed) rec(closed.scheduledEventId).closedAt = at;
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) {
      byScheduled.set(String(e.eventId), scheduled.activityId!);
      out[scheduled.activityId!] ??= {
        attempt: 0,
        scheduledAt: at,
        completed: 0,
        failed: 0,
        cancelled: 0,
        timedOut: 0,
      };
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const r = rec(started.scheduledEventId);
      r.attempt = started.attempt ?? 1;
      r.startedBy = started.identity ?? undefined;
      const f = started.lastFailure;
      r.lastFailure = f
        ? (f.applicationFailureInfo?.type ??
          (f.timeoutFailureInfo
            ? `timeout ${timeoutName(f.timeoutFailureInfo.timeoutType)}`
            : (f.message ?? 'failure')))
        : undefined;
    }
    if (e.activityTaskCompletedEventAttributes)
      rec(e.activityTaskCompletedEventAttributes.scheduledEventId).completed++;
    if (e.activityTaskFailedEventAttributes) rec(e.activityTaskFailedEventAttributes.scheduledEventId).failed++;
    if (e.activityTaskCanceledEventAttributes) rec(e.activityTaskCanceledEventAttributes.scheduledEventId).cancelled++;
    if (e.activityTaskTimedOutEventAttributes) rec(e.activityTaskTimedOutEventAttributes.scheduledEventId).timedOut++;
  }
  return out;
}

function timeoutName(type: unknown): string {
  // TimeoutType enum: 1 START_TO_CLOSE, 2 SCHEDULE_TO_START, 3 SCHEDULE_TO_CLOSE, 4 HEARTBEAT
  const names: Record<string, string> = {
    1: 'START_TO_CLOSE',
    2: 'SCHEDULE_TO_START',
    3: 'SCHEDULE_TO_CLOSE',
    4: 'HEARTBEAT',
  };
  return names[String(type)] ?? String(type).replace(/^TIMEOUT_TYPE_/, '');
}

/** The pid at the end of a worker identity (`gpu[cpu]@host/1234`). */
export function identityPid(identity: string | undefined): number | undefined {
  const m = /\/(\d+)$/.exec(identity ?? '');
  return m ? Number(m[1]) : undefined;
}

/** One line per step: when it was scheduled and closed (s after `t0`) and its attempts. */
export function timeline(records: Record<string, ActivityRecord>, t0: number): string {
  return Object.entries(records)
    .sort(([, a], [, b]) => a.scheduledAt - b.scheduledAt)
    .map(
      ([id, r]) =>
        `${id} ${((r.scheduledAt - t0) / 1000).toFixed(1)}–${r.closedAt ? ((r.closedAt - t0) / 1000).toFixed(1) : '?'} s${r.attempt > 1 ? ` (attempt ${r.attempt} after ${r.lastFailure})` : ''}`,
    )
    .join(', ');
}

/** One progress update of a kernel, as WMSS_PROGRESS_TRACE records it (kernels/wmss_kernels/faults.py). */
export interface TraceLine {
  /** Wall-clock time, seconds since the epoch. */
  t: number;
  pid: number;
  verb: string;
  done: number;
  total: number;
}

/** The progress updates of one kernel verb (sft, joint, entropy, …) in a WMSS_PROGRESS_TRACE file. */
export function readTrace(file: string, verb: string): TraceLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.endsWith('}'))
    .map((l) => JSON.parse(l) as TraceLine)
    .filter((l) => l.verb === verb);
}
