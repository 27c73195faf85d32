/**
 * The worker's kernel fork server (activities/kernelForkServer.ts) with real kernels: which
 * launches go through it, that runKernel's kernel is then a child of the server (not a fresh
 * interpreter), and that giving the server up stops it and removes its socket.
 * The kernel side (byte-identical outputs, signals, fallback) is kernels/tests/test_forkserver.py.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pythonExecutable, runKernel } from '../../activities/kernelBridge';
import {
  acquireKernelForkServer,
  forkServerEnabled,
  kernelForkServerInfo,
  viaForkServer,
} from '../../activities/kernelForkServer';
import { kernelCommand } from '../../activities/kernelLaunch';

const parentOf = (pid: number) =>
  Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(')').pop()!.trim().split(/\s+/)[1]);

async function waitFor(what: string, ok: () => boolean, ms = 120_000): Promise<void> {
  const until = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('on by default; WMSS_KERNEL_FORK_SERVER=0 (or false, off, no) turns it off, and then nothing starts', () => {
  expect(forkServerEnabled({})).toBe(true);
  expect(forkServerEnabled({ WMSS_KERNEL_FORK_SERVER: '1' })).toBe(true);
  for (const off of ['0', 'false', 'OFF', 'no'])
    expect(forkServerEnabled({ WMSS_KERNEL_FORK_SERVER: off })).toBe(false);
  const release = acquireKernelForkServer(pythonExecutable(), { WMSS_KERNEL_FORK_SERVER: '0' });
  expect(kernelForkServerInfo()).toBeUndefined();
  release();
});

describe('a running fork server', () => {
  const python = pythonExecutable();
  let release: () => void;
  let dir: string;

  beforeAll(async () => {
    release = acquireKernelForkServer(python, {});
    await waitFor('the server to listen', () => kernelForkServerInfo()?.listening === true);
    dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-fork-test-'));
  }, 120_000);

  test('one-process kernels go through the fork client; torchrun and another interpreter start plainly', () => {
    const plain = kernelCommand(python, 'sft', '/j.json');
    const via = viaForkServer(python, plain, 1);
    expect(via.file).toBe(python);
    expect(via.args.slice(0, 2)).toEqual(['-I', '-S']);
    expect(via.args[2]).toMatch(/wmss_kernels\/forkclient\.py$/);
    expect(via.args.slice(3)).toEqual([kernelForkServerInfo()!.socket, python, ...plain.args]);
    const torchrun = kernelCommand(python, 'sft', '/j.json', 2);
    expect(viaForkServer(python, torchrun, 2)).toEqual(torchrun);
    expect(viaForkServer('/other/python', kernelCommand('/other/python', 'sft', '/j.json'), 1).file).toBe(
      '/other/python',
    );
  });

  test('runKernel: the kernel is a child of the server, with the result and log of a plain kernel', async () => {
    const tiny = await runKernel(
      'make-tiny',
      {
        log_file: path.join(dir, 'tiny.log'),
        output_dir: path.join(dir, 'model'),
        data_dir: path.join(dir, 'data'),
        train_samples: 64,
        test_samples: 4,
      },
      { jobFile: path.join(dir, 'jobs', 'tiny.json'), stallMs: 600_000 },
    );
    expect(existsSync(path.join(tiny.outputs.model_dir, 'config.json'))).toBe(true);
    const jobFile = path.join(dir, 'jobs', 'entropy.json');
    const parents: number[] = [];
    const out = await runKernel(
      'entropy',
      {
        log_file: path.join(dir, 'entropy.log'),
        model_path: tiny.outputs.model_dir,
        data_file: tiny.outputs.train_file,
        data_format: 'messages',
        output_path: path.join(dir, 'entropy.jsonl'),
        field: 'entropy_0',
        definition: 'shifted',
        max_length: 96,
        batch_tokens: 4096,
        vocab_chunk: 4096,
        device: 'cpu',
        seed: 42,
        threads: 1,
      },
      {
        jobFile,
        stallMs: 600_000,
        onHeartbeat: (p) => {
          // at the first progress line the kernel is alive and has recorded its pid
          if (p.total > 0 && parents.length === 0)
            for (const pid of readdirSync(`${jobFile}.pids`)) parents.push(parentOf(Number(pid)));
        },
      },
    );
    expect(parents).toEqual([kernelForkServerInfo()!.pid]);
    expect(out.metrics.samples).toBe(64);
    const log = readFileSync(path.join(dir, 'entropy.log'), 'utf8');
    expect(log).toMatch(/wmss_kernels [\d.]+: entropy --job/);
    expect(log).not.toMatch(/wmss fork client/); // no fallback to a plain start
  }, 300_000);

  test('giving it up stops the server and removes its socket', async () => {
    const info = kernelForkServerInfo()!;
    release();
    expect(kernelForkServerInfo()).toBeUndefined();
    await waitFor(
      'the server to exit',
      () =>
        !existsSync(`/proc/${info.pid}`) ||
        readFileSync(`/proc/${info.pid}/stat`, 'utf8').split(')').pop()!.trim()[0] === 'Z',
      60_000,
    );
    await waitFor('the socket to go', () => !existsSync(info.socket), 10_000);
    expect(viaForkServer(python, kernelCommand(python, 'sft', '/j.json'), 1).args[0]).toBe('-m');
  }, 90_000);
});
