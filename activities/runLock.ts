/**
 * The run dir lock: one workflow execution at a time writes a run dir.
 *
 * The lock belongs to a workflow execution (namespace, workflow id, run id), not to a worker
 * process: a worker that crashes does not release it (the workflow goes on on another worker and
 * still owns the dir), and a run that ends in any way other than termination releases it in a
 * final activity. Whether a lock is stale is asked of Temporal, which knows whether the owning
 * execution is still open: RUNNING = held; closed (completed, failed, cancelled, continued) or
 * unknown to the server = stale, taken over at once; terminated or timed out = stale once its
 * activities have had time to stop (their kernels get SIGTERM on the next heartbeat and up to
 * 120 s to save a checkpoint), so the new run waits that long, heartbeating.
 *
 * On disk: `<runDir>/.wmss/lock/<generation>.json`, the highest generation being the lock. A
 * generation file is created with link(2) from a complete temporary file, which fails with EEXIST
 * when it exists: that is the compare-and-swap. Two runs that both find the lock free (or stale)
 * race for the same next generation and exactly one wins; the loser reads the winner's record and
 * is refused. Taking over never deletes the file it judged stale before the new one exists.
 */
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, WorkflowNotFoundError } from '@temporalio/common';
import { RUN_CONFIG_FILE } from '../pipeline/artifacts';
import { ErrorTypes } from '../pipeline/errors';
import { withFsFailures } from './store/fsFailures';
import { fsyncDir, stagingName, writeFileDurable, writeFileSynced } from './store/durableFs';
import { confineReal, requireAbsoluteRunDir } from './store/runDirPaths';
import { currentHost } from './hostContext';
import { readInputText } from './store/inputFiles';
import { activityHeartbeat } from './store/heartbeat';
import type { LockInput, LockResult, RunLockActivities } from './contract';

export const LOCK_DIR = '.wmss/lock';
export const LOCK_FORMAT = 'wmss-lock/1';
const GENERATION = /^(\d{12})\.json$/;

export interface LockOwner {
  namespace: string;
  workflowId: string;
  runId: string;
}

export interface LockRecord extends LockOwner {
  format: typeof LOCK_FORMAT;
  runName: string;
  host: string;
  pid: number;
  acquiredAt: string;
}

/** What Temporal says about the execution that holds a lock. */
export type OwnerState =
  | { state: 'open' }
  | { state: 'closed'; status: string; closeTime?: Date; stopsAbruptly: boolean }
  | { state: 'unknown' };

export interface LockDeps {
  ownerState: (owner: LockOwner) => Promise<OwnerState>;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Called while waiting for a terminated owner's activities to stop. */
  onWait?: (until: Date, owner: LockRecord) => void;
  /** How long after a terminated owner closed its activities may still be writing. */
  terminatedGraceMs?: number;
}

export interface Acquired {
  generation: number;
  file: string;
  /** The stale lock that was replaced, if any. */
  tookOverFrom?: LockRecord;
  /** True when this execution already held the lock (an activity retry). */
  alreadyHeld: boolean;
}

/** Kernel kill grace (120 s, kernelBridge) + heartbeat throttle (5 s) + margin. */
export const DEFAULT_TERMINATED_GRACE_MS = 150_000;

export function terminatedGraceMs(): number {
  const s = Number(process.env.WMSS_LOCK_TERMINATED_GRACE_SECONDS);
  return Number.isFinite(s) && s >= 0 && process.env.WMSS_LOCK_TERMINATED_GRACE_SECONDS !== ''
    ? s * 1000
    : DEFAULT_TERMINATED_GRACE_MS;
}

export function lockDir(runDir: string): string {
  return path.join(runDir, ...LOCK_DIR.split('/'));
}

const genFile = (dir: string, gen: number) => path.join(dir, `${String(gen).padStart(12, '0')}.json`);

async function generations(dir: string): Promise<number[]> {
  const entries = await fsp.readdir(dir).catch(() => [] as string[]);
  return entries.flatMap((e) => (GENERATION.test(e) ? [Number(GENERATION.exec(e)![1])] : [])).sort((a, b) => b - a);
}

function parseRecord(text: string): LockRecord | undefined {
  try {
    const r = JSON.parse(text) as LockRecord;
    return r &&
      r.format === LOCK_FORMAT &&
      typeof r.workflowId === 'string' &&
      typeof r.runId === 'string' &&
      typeof r.namespace === 'string'
      ? r
      : undefined;
  } catch {
    return undefined;
  }
}

/** The current lock of a run dir: its generation and record, or undefined when nobody holds one. */
export async function readRunLock(
  runDir: string,
): Promise<{ generation: number; file: string; record: LockRecord | undefined } | undefined> {
  const dir = lockDir(runDir);
  const [top] = await generations(dir);
  if (top === undefined) return undefined;
  const file = genFile(dir, top);
  const text = await readInputText(file).catch(() => undefined);
  if (text === undefined) return undefined; // released between readdir and read
  return { generation: top, file, record: parseRecord(text) };
}

const sameExecution = (a: LockOwner, b: LockOwner) =>
  a.namespace === b.namespace && a.workflowId === b.workflowId && a.runId === b.runId;

function locked(runDir: string, message: string, holder?: LockRecord): ApplicationFailure {
  return ApplicationFailure.create({
    type: ErrorTypes.RunDirLocked,
    nonRetryable: true,
    message: `run dir ${runDir} ${message}`,
    details: [
      {
        runDir,
        holder: holder
          ? {
              workflowId: holder.workflowId,
              runId: holder.runId,
              namespace: holder.namespace,
              host: holder.host,
              acquiredAt: holder.acquiredAt,
            }
          : null,
      },
    ],
  });
}

/** Create `file` with `data` only if it does not exist, never showing a partial file. False when it exists. */
async function createExclusive(file: string, data: string): Promise<boolean> {
  const tmp = stagingName(file);
  await writeFileSynced(tmp, data, 'wx');
  try {
    await fsp.link(tmp, file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
    // no hard links on this file system (some FUSE/object-store mounts): O_EXCL create instead
    try {
      await fsp.writeFile(file, data, { flag: 'wx' });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
  } finally {
    await fsp.rm(tmp, { force: true });
    await fsyncDir(path.dirname(file));
  }
}

function describeHolder(r: LockRecord): string {
  return `workflow ${r.workflowId} (run ${r.runId}, namespace ${r.namespace}, host ${r.host}, since ${r.acquiredAt})`;
}

/**
 * Take the lock of `runDir` for `me`, or fail with RunDirLocked naming the holder. Idempotent for
 * the execution that holds it (an activity retried after a worker crash gets it again).
 */
export async function acquireRunLock(runDir: string, me: LockRecord, deps: LockDeps): Promise<Acquired> {
  const dir = lockDir(runDir);
  await fsp.mkdir(dir, { recursive: true });
  await confineReal(runDir, dir);
  const now = deps.now ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const grace = deps.terminatedGraceMs ?? terminatedGraceMs();
  for (let attempt = 0; attempt < 20; attempt++) {
    const current = await readRunLock(runDir);
    let stale: LockRecord | undefined;
    if (current) {
      const holder = current.record;
      if (!holder)
        throw locked(
          runDir,
          `has a lock file that cannot be read (${current.file}); if no run uses this dir, delete it`,
        );
      if (sameExecution(holder, me)) return { generation: current.generation, file: current.file, alreadyHeld: true };
      if (holder.namespace !== me.namespace) {
        throw locked(
          runDir,
          `is locked by ${describeHolder(holder)}, in another namespace than this worker's (${me.namespace}), so whether it still runs cannot be checked; if it does not, delete ${current.file}`,
          holder,
        );
      }
      const state = await deps.ownerState(holder);
      if (state.state === 'open') {
        throw locked(
          runDir,
          `is in use by ${describeHolder(holder)}, which is still running: two runs must not write one run dir. Wait for it (wmss watch ${holder.workflowId}), cancel it (wmss cancel ${holder.workflowId}), or choose another runDir`,
          holder,
        );
      }
      if (state.state === 'closed' && state.stopsAbruptly && state.closeTime) {
        // A terminated run's activities learn it on their next heartbeat and then stop; its
        // training kernels may still be saving a checkpoint for up to the kill grace.
        const until = state.closeTime.getTime() + grace;
        while (now() < until) {
          deps.onWait?.(new Date(until), holder);
          await sleep(Math.min(5000, until - now()));
        }
      }
      stale = holder;
    }
    const next = (current?.generation ?? 0) + 1;
    const file = genFile(dir, next);
    if (!(await createExclusive(file, `${JSON.stringify(me, null, 2)}\n`))) continue; // another run won this generation: look again
    // Older generations are stale or were ours: only the newest counts, so remove them.
    for (const gen of await generations(dir)) if (gen < next) await fsp.rm(genFile(dir, gen), { force: true });
    return { generation: next, file, tookOverFrom: stale, alreadyHeld: false };
  }
  throw ApplicationFailure.create({
    type: ErrorTypes.RunDirLocked,
    message: `run dir ${runDir}: the lock changed hands 20 times while taking it; retrying`,
  });
}

/** Release the lock if `me` holds it; a lock someone else holds is left alone. */
export async function releaseRunLock(runDir: string, me: LockOwner): Promise<boolean> {
  const current = await readRunLock(runDir);
  if (!current || !current.record || !sameExecution(current.record, me)) return false;
  const dir = lockDir(runDir);
  for (const gen of await generations(dir))
    if (gen <= current.generation) await fsp.rm(genFile(dir, gen), { force: true });
  await fsyncDir(dir);
  return true;
}

/** What Temporal knows about a lock's owner, through the worker's client. */
export async function ownerStateFromTemporal(owner: LockOwner): Promise<OwnerState> {
  const client = Context.current().client;
  try {
    const d = await client.workflow.getHandle(owner.workflowId, owner.runId).describe();
    if (d.status.name === 'RUNNING') return { state: 'open' };
    return {
      state: 'closed',
      status: d.status.name,
      closeTime: d.closeTime,
      stopsAbruptly: d.status.name === 'TERMINATED' || d.status.name === 'TIMED_OUT',
    };
  } catch (err) {
    // Gone from the server (retention expired, another server's history): nothing of it can still run here.
    if (err instanceof WorkflowNotFoundError || (err as { name?: string }).name === 'WorkflowNotFoundError')
      return { state: 'unknown' };
    throw err;
  }
}

function currentOwner(): LockOwner {
  const info = Context.current().info;
  if (!info.workflowExecution) throw new Error('the run dir lock is taken by the pipeline workflow only');
  return {
    namespace: info.namespace,
    workflowId: info.workflowExecution.workflowId,
    runId: info.workflowExecution.runId,
  };
}

/** The two activities of the control worker that bracket a run (workflows/wmssPipeline.ts). */
export function runLockActivities(): RunLockActivities {
  // a read-only or full run dir fails the lock, the first thing a run writes, with a typed error
  return withFsFailures(
    {
      async lockRunDir(input: LockInput): Promise<LockResult> {
        const runDir = requireAbsoluteRunDir(path.resolve(input.runDir));
        const me: LockRecord = {
          format: LOCK_FORMAT,
          ...currentOwner(),
          runName: input.runName,
          host: currentHost(),
          pid: process.pid,
          acquiredAt: new Date().toISOString(),
        };
        const got = await acquireRunLock(runDir, me, {
          ownerState: ownerStateFromTemporal,
          onWait: (until, owner) =>
            activityHeartbeat({
              done: 0,
              total: 0,
              unit: 'samples',
              phase: `waiting until ${until.toISOString()} for the activities of terminated run ${owner.workflowId} to stop`,
              updatedAt: new Date().toISOString(),
            }),
        });
        if (input.config) {
          const file = path.join(runDir, ...RUN_CONFIG_FILE.split('/'));
          await confineReal(runDir, file);
          await writeFileDurable(file, `${JSON.stringify(input.config, null, 2)}\n`);
        }
        return {
          runDir,
          generation: got.generation,
          host: me.host,
          ...(got.tookOverFrom && {
            tookOverFrom: { workflowId: got.tookOverFrom.workflowId, runId: got.tookOverFrom.runId },
          }),
        };
      },

      async unlockRunDir(input: { runDir: string }): Promise<boolean> {
        const runDir = requireAbsoluteRunDir(path.resolve(input.runDir));
        if (!existsSync(lockDir(runDir))) return false;
        return releaseRunLock(runDir, currentOwner());
      },
    },
    (input: { runDir: string }) => path.resolve(input.runDir),
  );
}
