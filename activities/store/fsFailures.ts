/**
 * File-system errors that a retry cannot fix, as typed non-retryable failures naming the path:
 * a full disk or used-up quota (ENOSPC, EDQUOT → InsufficientDisk) and a path the worker may not
 * write (EROFS, EACCES, EPERM → NotWritable). Left as plain errors they are retried five times as
 * if they were crashes, and Node's messages often name no path at all ("ENOSPC … write").
 * Every other error passes through unchanged (retryable, as unknown errors are).
 */
import { promises as fsp, constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { ErrorTypes } from '../../pipeline/errors';
import { existingAncestor } from './diskSpace';

const DISK_FULL = new Set(['ENOSPC', 'EDQUOT']);
const NOT_WRITABLE = new Set(['EROFS', 'EACCES', 'EPERM']);

type ErrnoError = NodeJS.ErrnoException & { dest?: string };

function errnoOf(err: unknown): ErrnoError | undefined {
  // duck-typed: errors of node:fs need not be instances of this realm's Error (jest, vm contexts)
  if (err instanceof ApplicationFailure || typeof err !== 'object' || err === null) return undefined;
  const e = err as ErrnoError;
  return typeof e.code === 'string' && typeof e.message === 'string' ? e : undefined;
}

/**
 * Give an errno error the path it concerns when Node left it out (writes through a file handle:
 * "ENOSPC: no space left on device, write"), so the failure can name the file; then rethrow it.
 */
export function withPath(err: unknown, file: string): unknown {
  const e = errnoOf(err);
  if (e && !e.path) e.path = file;
  return err;
}

/** A write refused for good: full disk, quota, read-only or forbidden. */
export function isWriteRefused(err: unknown): boolean {
  const code = errnoOf(err)?.code;
  return code !== undefined && (DISK_FULL.has(code) || NOT_WRITABLE.has(code));
}

/** errno code of a write test in `dir` (EROFS, EACCES...), or undefined when it is writable. */
async function unwritable(dir: string): Promise<string | undefined> {
  return fsp.access(dir, fsConstants.W_OK).then(
    () => undefined,
    (e: NodeJS.ErrnoException) => e.code ?? 'EACCES',
  );
}

function notWritable(target: string, code: string, cause: string): ApplicationFailure {
  const why =
    code === 'EROFS'
      ? 'is on a read-only file system'
      : 'is not writable (or readable) by this worker: permission denied';
  return ApplicationFailure.create({
    type: ErrorTypes.NotWritable,
    nonRetryable: true,
    message: `${target} ${why} (${cause}). The run dir must be writable, and the inputs readable, by the worker's user; fix the mount or permissions, then resume the run (wmss resume): finished steps are reused.`,
    details: [{ file: target, line: null, field: null, code }],
  });
}

/**
 * The typed failure for `err`, or undefined when it is not a permanent file-system error.
 * `fallback` names where the activity was writing when the error carries no path (the run dir).
 */
export async function fsFailure(err: unknown, fallback?: string): Promise<ApplicationFailure | undefined> {
  const e = errnoOf(err);
  if (!e) return undefined;
  const code = e.code!;
  const target = e.dest ?? e.path ?? fallback;
  if (DISK_FULL.has(code)) {
    const why = code === 'EDQUOT' ? 'the disk quota is used up' : 'the file system is full';
    return ApplicationFailure.create({
      type: ErrorTypes.InsufficientDisk,
      nonRetryable: true,
      message: `cannot write ${target ?? '(path unknown)'}: ${why} (${e.message}). What this attempt wrote is not published. Free space (or set sft/joint.keepCheckpoints), then resume the run (wmss resume): finished steps are reused.`,
      details: [{ file: target ?? null, line: null, field: null, code }],
    });
  }
  if (NOT_WRITABLE.has(code)) return notWritable(target ?? '(path unknown)', code, e.message);
  // Node's recursive mkdir reports ENOENT for a directory it cannot create on a read-only file
  // system ("ENOENT … mkdir '<run dir>/.wmss'" although the run dir exists): ask the nearest
  // existing ancestor whether it takes writes.
  if (code === 'ENOENT' && e.syscall === 'mkdir' && e.path) {
    const parent = await existingAncestor(path.dirname(e.path));
    const denied = await unwritable(parent);
    if (denied) return notWritable(parent, denied, `cannot create ${e.path}`);
  }
  return undefined;
}

/** Rethrow `err` as its typed failure when it has one. */
export async function rethrowFsFailure(err: unknown, fallback?: string): Promise<never> {
  throw (await fsFailure(err, fallback)) ?? err;
}

type AnyActivity = (...args: never[]) => Promise<unknown>;

/**
 * The same activities with permanent file-system errors turned into typed failures; `fallbackOf`
 * picks the path to name when an error has none (the run dir of the input).
 */
export function withFsFailures<T extends Record<string, AnyActivity>>(
  activities: T,
  fallbackOf: (...args: never[]) => string | undefined = () => undefined,
): T {
  const wrapped = Object.entries(activities).map(([name, fn]) => [
    name,
    async (...args: never[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        let fallback: string | undefined;
        try {
          fallback = fallbackOf(...args);
        } catch {
          fallback = undefined;
        }
        return rethrowFsFailure(err, fallback);
      }
    },
  ]);
  return Object.fromEntries(wrapped) as T;
}
