/** Device sets: a GPU belongs to one worker; a second claim is refused, a dead owner's lock is taken over. */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { claimDevices, DeviceClaimError } from '../../workers/deviceLocks';
import { cleanupTmp, tmpDir } from './helpers/tmp';

const gpus = (...ids: number[]) => ({ kind: 'cuda' as const, ids });

test('a claimed device is refused to a second worker, with the owner named; release frees it', () => {
  const dir = tmpDir();
  const first = claimDevices(gpus(0, 1), { worker: 'worker A', host: 'h1', dir });
  expect(first.files.map((f) => path.basename(f))).toEqual(['gpu-0.lock', 'gpu-1.lock']);
  expect(JSON.parse(readFileSync(path.join(dir, 'gpu-1.lock'), 'utf8'))).toMatchObject({
    pid: process.pid,
    worker: 'worker A',
    host: 'h1',
  });

  expect(() => claimDevices(gpus(2, 1), { worker: 'worker B', host: 'h1', dir })).toThrow(DeviceClaimError);
  expect(() => claimDevices(gpus(1), { worker: 'worker B', host: 'h1', dir })).toThrow(
    /GPU 1 is already owned by worker A \(pid \d+ on h1/,
  );
  // all or nothing: the refused claim left no lock on GPU 2
  expect(existsSync(path.join(dir, 'gpu-2.lock'))).toBe(false);
  // disjoint device sets on one host are fine
  const other = claimDevices(gpus(2, 3), { worker: 'worker B', host: 'h1', dir });

  first.release();
  expect(existsSync(path.join(dir, 'gpu-0.lock'))).toBe(false);
  claimDevices(gpus(0, 1), { worker: 'worker C', host: 'h1', dir }).release();
  other.release();
});

test("a lock whose owner is alive in another process is refused; a dead owner's lock is taken over", async () => {
  const dir = tmpDir();
  const live = spawn('sleep', ['30']);
  try {
    writeFileSync(
      path.join(dir, 'gpu-0.lock'),
      JSON.stringify({ pid: live.pid, host: 'h1', worker: 'worker X', since: 'earlier' }),
    );
    expect(() => claimDevices(gpus(0), { worker: 'worker Y', host: 'h1', dir })).toThrow(
      /GPU 0 is already owned by worker X/,
    );
  } finally {
    live.kill('SIGKILL');
  }
  const dead = spawnSync('true').pid; // exited: its pid names no process now
  writeFileSync(
    path.join(dir, 'gpu-0.lock'),
    JSON.stringify({ pid: dead, host: 'h1', worker: 'crashed worker', since: 'earlier' }),
  );
  const claim = claimDevices(gpus(0), { worker: 'worker Y', host: 'h1', dir });
  expect(JSON.parse(readFileSync(path.join(dir, 'gpu-0.lock'), 'utf8')).worker).toBe('worker Y');
  claim.release();
});

test('--gpus cpu claims nothing', () => {
  const dir = tmpDir();
  const claim = claimDevices({ kind: 'cpu' }, { worker: 'w', host: 'h', dir });
  expect(claim.files).toEqual([]);
  expect(readdirSync(dir)).toEqual([]);
});
afterAll(cleanupTmp);
