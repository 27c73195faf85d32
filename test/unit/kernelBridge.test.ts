/**
 * The kernel bridge against a fake kernel (a shell script standing in for Python): protocol
 * parsing, exit codes → typed failures, hang detection, cancellation, and no process left behind.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { runKernel } from '../../activities/kernelBridge';
import { ErrorTypes } from '../../pipeline/errors';
import type { StepProgress } from '../../pipeline/steps';

const fake = path.join(__dirname, 'fixtures', 'fake-kernel.sh');
let dir: string;

beforeAll(() => {
  process.env.WMSS_PYTHON = fake;
});
afterAll(() => {
  delete process.env.WMSS_PYTHON;
});
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-bridge-'));
});

const job = () => ({
  log_file: path.join(dir, 'kernel.log'),
  output_dir: path.join(dir, 'm'),
  data_dir: path.join(dir, 'd'),
  train_samples: 1,
  test_samples: 1,
});
const run = (mode: string, extra: Partial<Parameters<typeof runKernel>[2]> = {}) =>
  runKernel('make-tiny', job(), {
    jobFile: path.join(dir, 'job.json'),
    stallMs: 60_000,
    env: { FAKE_MODE: mode, FAKE_PIDFILE: path.join(dir, 'pid') },
    ...extra,
  });

/** Running, not a zombie: a killed orphan stays a zombie until the container's init reaps it. */
const alive = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(')').pop()!.trim()[0] !== 'Z';
  } catch {
    return false;
  }
};

async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

test('a successful kernel returns its result; progress and checkpoints reach the heartbeat', async () => {
  const beats: StepProgress[] = [];
  const out = await run('ok', { onHeartbeat: (p) => beats.push(p) });
  expect(out.outputs.checkpoint).toBe('/tmp/ckpt-2');
  expect(out.metrics.steps).toBe(2);
  expect(out.lastCheckpoint).toEqual({ path: '/tmp/ckpt-1', step: 1 });
  expect(beats.some((b) => b.done === 1 && b.total === 2 && b.loss === 0.5 && b.detail === 'set a: 1/2 rows')).toBe(
    true,
  );
  // The job file holds exactly what the kernel was given; stray stdout goes to the log.
  expect(JSON.parse(readFileSync(path.join(dir, 'job.json'), 'utf8')).train_samples).toBe(1);
  expect(readFileSync(path.join(dir, 'kernel.log'), 'utf8')).toMatch(/not a protocol line.*stray line/);
});

test('exit 2 is a non-retryable InvalidInput carrying file, line and field', async () => {
  const f = await failureOf(run('invalid'));
  expect(f.type).toBe(ErrorTypes.InvalidInput);
  expect(f.nonRetryable).toBe(true);
  expect(f.message).toMatch(/train\.jsonl line 3: field 'idx'/);
  expect(f.details?.[0]).toEqual({ file: 'train.jsonl', line: 3, field: 'idx' });
});

test.each([
  ['oom', ErrorTypes.KernelOutOfMemory],
  ['crash', ErrorTypes.KernelCrashed],
  ['noresult', ErrorTypes.KernelCrashed],
])('%s maps to a retryable %s', async (mode, type) => {
  const f = await failureOf(run(mode));
  expect(f.type).toBe(type);
  expect(f.nonRetryable).toBeFalsy();
});

test.each([
  ['ranklost', 1],
  ['rank0lost', 0],
])('%s under torchrun is a retryable RankLost naming the rank and the signal', async (mode, rank) => {
  const f = await failureOf(run(mode, { processes: 2 }));
  expect(f.type).toBe(ErrorTypes.RankLost);
  expect(f.nonRetryable).toBeFalsy();
  expect(f.message).toContain(`lost rank ${rank}, signal 9 (SIGKILL)`);
});

test('a crash message includes the tail of the log and names it', async () => {
  const f = await failureOf(run('crash'));
  expect(f.message).toMatch(/Traceback: boom/);
  expect(f.message).toContain(path.join(dir, 'kernel.log'));
});

test('a kernel that stops printing progress is killed with its whole process group', async () => {
  const f = await failureOf(run('hang', { stallMs: 800, heartbeatEveryMs: 100 }));
  expect(f.type).toBe(ErrorTypes.KernelStalled);
  const grandchild = Number(readFileSync(path.join(dir, 'pid'), 'utf8'));
  await new Promise((r) => setTimeout(r, 200));
  expect(alive(grandchild)).toBe(false);
});

test('the stall limit starts at the first protocol line: start-up (imports, model loading) has its own allowance', async () => {
  // silent for 1.5 s: within a 5 s start-up allowance although the stall limit is 0.5 s
  const ok = await run('slowstart', { stallMs: 500, startupMs: 5000, heartbeatEveryMs: 100 });
  expect(ok.metrics.steps).toBe(1);
  // the start-up allowance is never shorter than the stall limit, and it is enforced
  const f = await failureOf(run('slowstart', { stallMs: 300, startupMs: 600, heartbeatEveryMs: 100 }));
  expect(f.type).toBe(ErrorTypes.KernelStalled);
  expect(f.message).toMatch(/printed nothing since it started for 1 s/);
});

test('cancellation sends SIGTERM, lets the kernel checkpoint, and rethrows the cancellation', async () => {
  let cancel!: (e: Error) => void;
  const cancelled = new Promise<never>((_, reject) => (cancel = reject));
  const beats: StepProgress[] = [];
  const p = run('term', { cancelled, killGraceMs: 5000, onHeartbeat: (b) => beats.push(b) });
  await new Promise((r) => setTimeout(r, 500));
  const reason = new Error('cancelled by test');
  cancel(reason);
  await expect(p).rejects.toBe(reason);
  expect(beats.at(-1)?.lastCheckpoint).toEqual({ path: '/tmp/ckpt-t', step: 3 });
  const grandchild = Number(readFileSync(path.join(dir, 'pid'), 'utf8'));
  expect(alive(grandchild)).toBe(false);
});

test('a missing interpreter is a clear non-retryable error', async () => {
  process.env.WMSS_PYTHON = path.join(dir, 'no-such-python');
  try {
    const f = await failureOf(run('ok'));
    expect(f.type).toBe(ErrorTypes.WorkerMisconfigured);
    expect(f.message).toMatch(/setup-python\.sh|WMSS_PYTHON/);
  } finally {
    process.env.WMSS_PYTHON = fake;
  }
});

// Issue 21 defect 2: a NaN final loss became `null` in the result line, the schema refused the
// line, and the bridge reported "exited 0 without a result line" five times.
test('a result line with a null metric (a NaN the kernel could not print) is still the result', async () => {
  const out = await run('nanresult');
  expect(out.outputs.checkpoint).toBe('/tmp/ckpt-2');
  expect(out.metrics).toEqual({ steps: 2 });
});

test.each([
  ['its own exit code', '5'],
  ['torchrun hiding it behind exit 1', '1'],
])(
  'TrainingDiverged is non-retryable with step and last finite loss, via %s, and names the config key',
  async (_how, code) => {
    const f = await failureOf(
      run('diverged', {
        env: { FAKE_MODE: 'diverged', FAKE_EXIT: code, FAKE_PIDFILE: path.join(dir, 'pid') },
        configKeys: { lr: 'sft.lr' },
      }),
    );
    expect(f.type).toBe(ErrorTypes.TrainingDiverged);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toMatch(/^sft\.lr: training diverged at optimizer step 2 of 6/);
    expect(f.details?.[0]).toMatchObject({ field: 'sft.lr', step: 2, last_finite_loss: 6.2 });
  },
);

test('a job-field error names the config key the user wrote, not the internal job file', async () => {
  const jobFile = path.join(dir, 'job.json');
  const f = await failureOf(
    run('jobfield', {
      env: { FAKE_MODE: 'jobfield', FAKE_JOB: jobFile, FAKE_PIDFILE: path.join(dir, 'pid') },
      configKeys: { max_length: 'sft.maxLength' },
    }),
  );
  expect(f.type).toBe(ErrorTypes.InvalidInput);
  expect(f.nonRetryable).toBe(true);
  expect(f.message).toMatch(/^sft\.maxLength: raise it/);
  expect(f.message).not.toContain(jobFile);
  expect(f.message).not.toContain('max_length');
  expect(f.details?.[0]).toMatchObject({ field: 'sft.maxLength', file: null });
});

test('a full disk in the kernel is a non-retryable InsufficientDisk naming the file being written', async () => {
  const f = await failureOf(run('diskfull'));
  expect(f.type).toBe(ErrorTypes.InsufficientDisk);
  expect(f.nonRetryable).toBe(true);
  expect(f.message).toContain('/r/out/checkpoint-13.partial/optimizer.pt');
  expect(f.details?.[0]).toMatchObject({ file: '/r/out/checkpoint-13.partial/optimizer.pt' });
});
