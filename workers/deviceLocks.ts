/**
 * A GPU belongs to one worker at a time. Each worker claims its devices with one lock file per
 * device in a run-time directory of the host (WMSS_DEVICE_LOCK_DIR, else $XDG_RUNTIME_DIR/wmss-devices,
 * else <tmp>/wmss-devices). A second worker asking for a claimed device is refused with a message
 * naming the owner; a lock whose owner process is gone (crash, kill -9) is taken over.
 * `--gpus cpu` claims nothing: the CPU is not a device set anyone can own.
 */
import { linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import type { DeviceSet } from '../activities/deviceSet';

const LockOwner = z.object({
  pid: z.number().int(),
  /** Start time of the process from /proc (Linux): tells a live owner from a recycled pid. */
  procStart: z.string().optional(),
  host: z.string(),
  worker: z.string(),
  since: z.string(),
});
type LockOwner = z.infer<typeof LockOwner>;

export class DeviceClaimError extends Error {
  override name = 'DeviceClaimError';
}

export interface DeviceClaim {
  dir: string;
  files: string[];
  /** Removes the lock files that are still ours. */
  release(): void;
}

export function deviceLockDir(): string {
  if (process.env.WMSS_DEVICE_LOCK_DIR) return process.env.WMSS_DEVICE_LOCK_DIR;
  return path.join(process.env.XDG_RUNTIME_DIR || os.tmpdir(), 'wmss-devices');
}

function procStart(pid: number): string | undefined {
  try {
    // field 22 of /proc/<pid>/stat, counted after the parenthesised command name
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(')').pop()!.trim().split(/\s+/)[19];
  } catch {
    return undefined;
  }
}

function isAlive(owner: LockOwner): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false; // ESRCH: no such process
  }
  const started = procStart(owner.pid);
  return owner.procStart === undefined || started === undefined || started === owner.procStart;
}

function readOwner(file: string): LockOwner | undefined {
  try {
    return LockOwner.parse(JSON.parse(readFileSync(file, 'utf8')));
  } catch {
    return undefined; // missing or unreadable: nobody we can name holds it
  }
}

function refuse(id: number, file: string, owner: LockOwner): DeviceClaimError {
  return new DeviceClaimError(
    `GPU ${id} is already owned by ${owner.worker} (pid ${owner.pid} on ${owner.host}, since ${owner.since}; lock ${file}). ` +
      'A device belongs to one worker: give this worker other devices with --gpus, or stop that worker first.',
  );
}

/** Claims every device of `devices` or none (throws DeviceClaimError). */
export function claimDevices(devices: DeviceSet, opts: { worker: string; host: string; dir?: string }): DeviceClaim {
  const dir = opts.dir ?? deviceLockDir();
  const files: string[] = [];
  const claim: DeviceClaim = {
    dir,
    files,
    release() {
      for (const file of files.splice(0)) {
        if (readOwner(file)?.pid === process.pid) {
          try {
            unlinkSync(file);
          } catch {
            // already gone
          }
        }
      }
    },
  };
  if (devices.kind === 'cpu') return claim;
  mkdirSync(dir, { recursive: true });
  const me: LockOwner = {
    pid: process.pid,
    procStart: procStart(process.pid),
    host: opts.host,
    worker: opts.worker,
    since: new Date().toISOString(),
  };
  try {
    for (const id of devices.ids) files.push(claimOne(id, path.join(dir, `gpu-${id}.lock`), me));
  } catch (err) {
    claim.release();
    throw err;
  }
  return claim;
}

function claimOne(id: number, file: string, me: LockOwner): string {
  // The content is written first and linked into place, so a reader never sees a half-written
  // lock, and link() fails if the name exists: the claim is atomic.
  const mine = `${file}.${process.pid}.tmp`;
  writeFileSync(mine, JSON.stringify(me));
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(mine, file);
        return file;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const owner = readOwner(file);
      if (owner && isAlive(owner)) throw refuse(id, file, owner);
      // Stale: move it aside under a name of our own, so two workers taking over at once cannot
      // both succeed; if what we moved turns out to be a fresh claim of another worker, put it back.
      const aside = `${file}.stale-${process.pid}`;
      try {
        renameSync(file, aside);
      } catch {
        continue; // someone else moved it first: look again
      }
      const moved = readOwner(aside);
      if (moved && isAlive(moved)) {
        try {
          linkSync(aside, file);
        } catch {
          // a third worker claimed it meanwhile; either way the device is taken
        }
        unlinkSync(aside);
        throw refuse(id, file, moved);
      }
      unlinkSync(aside);
    }
    throw new DeviceClaimError(`could not claim GPU ${id}: the lock ${file} keeps changing hands`);
  } finally {
    unlinkSync(mine);
  }
}
