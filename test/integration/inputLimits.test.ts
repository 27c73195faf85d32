/**
 * Inputs that never end or are far too big (issue 21, defect 2), through a real dev server and real
 * worker processes (the compiled entry points: `npx tsc -p .` first):
 *  (a) a FIFO and /dev/zero as dataFile are refused before reading, naming the file;
 *  (b) a 16 GiB + 1 sparse file and a single over-long line fail fast and non-retryable, naming
 *      the file (and the line: the kernel's reader finds that one);
 *  (c) `wmss cancel` stops a step busy hashing a 1 TiB sparse data file (limits raised for that
 *      worker) within the heartbeat interval;
 *  (d) SIGTERM stops that worker within its shutdown grace while the step runs.
 * (A worker whose kernel is training already stopped on SIGTERM before this fix, the kernel saving
 * a checkpoint: serverFaults.test.ts covers kernels on cancel.)
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { RunConfig } from '../../pipeline/config';
import { progressQuery } from '../../pipeline/workflowApi';
import { startPipeline } from '../../client/commands/start';
import { DEFAULT_INPUT_LIMITS } from '../../activities/store/inputFiles';
import { startHarness, tinyRunConfig, type Harness } from '../../testkit/harness';
import { waitUntil, WorkerProcess } from '../../testkit/faultKit';

jest.setTimeout(600_000);

const CONTROL = 'limits';
/** Default limits. */
const GPU = 'limits-gpu';
/** Text-file limit raised to 2 TiB, so a 1 TiB sparse data file is hashed (for a long time). */
const GPU_BIG = 'limits-big';
const SHUTDOWN_S = 30;
/** The workers' heartbeat throttle (workers/createWorkers.ts): cancellation arrives with a heartbeat reply. */
const HEARTBEAT_S = 5;

let h: Harness;
const workers: WorkerProcess[] = [];
let bigGpu: WorkerProcess;

function config(name: string, dataFile: string, gpuQueue = GPU): RunConfig {
  const base = tinyRunConfig(h.assets, path.join(h.dir, name), name);
  return RunConfig.parse({ ...base, dataFile, placement: { ...base.placement, controlQueue: CONTROL, gpuQueue } });
}

/** The ApplicationFailure deepest in the chain: the step's own, with its details. */
function rootFailure(err: unknown): ApplicationFailure | undefined {
  let found: ApplicationFailure | undefined;
  for (let e = err as Error | undefined; e; e = (e as { cause?: Error }).cause)
    if (e instanceof ApplicationFailure) found = e;
  return found;
}

async function failureOfRun(handle: WorkflowHandle): Promise<{ wf: ApplicationFailure; step: ApplicationFailure }> {
  const err = await handle.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  return { wf: (err as WorkflowFailedError).cause as ApplicationFailure, step: rootFailure(err)! };
}

/** Attempts of the run's activities so far, from its history (a non-retryable failure has one). */
async function attempts(handle: WorkflowHandle): Promise<number[]> {
  const history = await handle.fetchHistory();
  return (history.events ?? []).flatMap((e) =>
    e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes.attempt ?? 1] : [],
  );
}

async function runningStep(handle: WorkflowHandle): Promise<boolean> {
  const p = await handle.query(progressQuery);
  return p.steps.some((s) => (s.id === 'entropy0' || s.id === 'sft') && s.state === 'running');
}

beforeAll(async () => {
  h = await startHarness({ workers: false });
  const opts = (gpu: string, env: Record<string, string> = {}) => ({
    address: () => h.server.address,
    queues: { control: CONTROL, gpu },
    logDir: path.join(h.dir, 'workers'),
    env: { WMSS_WORKER_SHUTDOWN_SECONDS: String(SHUTDOWN_S), ...env },
  });
  workers.push(new WorkerProcess('control', opts(GPU)), new WorkerProcess('gpu', opts(GPU)));
  bigGpu = new WorkerProcess('gpu', opts(GPU_BIG, { WMSS_MAX_TEXT_FILE_BYTES: String(2 ** 41) }));
  workers.push(bigGpu);
  await Promise.all(workers.map((w) => w.ready()));
});

afterAll(async () => {
  await Promise.all(workers.map((w) => w.kill()));
  await h?.stop();
});

test('(a) a FIFO or /dev/zero as dataFile is refused before reading, naming the file', async () => {
  const fifo = path.join(h.dir, 'data.fifo');
  execFileSync('mkfifo', [fifo]);
  const runs = [
    { file: fifo, what: 'a FIFO (named pipe), not a regular file' },
    { file: '/dev/zero', what: 'a character device, not a regular file' },
  ];
  const started = Date.now();
  const handles = await Promise.all(runs.map((r, i) => startPipeline(h.client, config(`refused-${i}`, r.file))));
  for (const [i, handle] of handles.entries()) {
    const { wf, step } = await failureOfRun(handle);
    expect({ type: wf.type, nonRetryable: wf.nonRetryable }).toEqual({ type: 'InvalidInput', nonRetryable: true });
    expect(step.message).toContain(`${runs[i].file} (dataFile): is ${runs[i].what}: refused before reading`);
    expect(step.details?.[0]).toEqual({ file: runs[i].file, line: null, field: 'dataFile' });
    expect(Math.max(...(await attempts(handle)))).toBe(1);
  }
  expect(Date.now() - started).toBeLessThan(60_000);
});

test('(b) a file over the size limit and a line over the length limit fail fast, non-retryable, naming file and line', async () => {
  const sparse = path.join(h.dir, 'sparse.jsonl');
  writeFileSync(sparse, '');
  truncateSync(sparse, DEFAULT_INPUT_LIMITS.maxTextFileBytes + 1);
  const longLine = path.join(h.dir, 'long-line.jsonl');
  const first = readFileSync(path.join(h.assets, 'data', 'train.jsonl'), 'utf8').split('\n')[0];
  writeFileSync(longLine, `${first}\n${'x'.repeat(DEFAULT_INPUT_LIMITS.maxLineBytes + 1)}\n${first}\n`);

  const started = Date.now();
  const [big, long] = await Promise.all([
    startPipeline(h.client, config('too-big', sparse)),
    startPipeline(h.client, config('too-long', longLine)),
  ]);
  const tooBig = await failureOfRun(big);
  expect({ type: tooBig.wf.type, nonRetryable: tooBig.wf.nonRetryable }).toEqual({
    type: 'InvalidInput',
    nonRetryable: true,
  });
  expect(tooBig.step.message).toContain(
    `${sparse} (dataFile): is ${DEFAULT_INPUT_LIMITS.maxTextFileBytes + 1} bytes, over the limit of ${DEFAULT_INPUT_LIMITS.maxTextFileBytes} bytes (WMSS_MAX_TEXT_FILE_BYTES)`,
  );
  expect(Math.max(...(await attempts(big)))).toBe(1);

  // read by the kernels (the digest accepts the file: it is small): their reader names the line
  const tooLong = await failureOfRun(long);
  expect({ type: tooLong.wf.type, nonRetryable: tooLong.wf.nonRetryable }).toEqual({
    type: 'InvalidInput',
    nonRetryable: true,
  });
  expect(tooLong.step.message).toContain(
    `${longLine} line 2: line longer than ${DEFAULT_INPUT_LIMITS.maxLineBytes} bytes (WMSS_MAX_LINE_BYTES)`,
  );
  expect(tooLong.step.details?.[0]).toMatchObject({ file: longLine, line: 2 });
  expect(Math.max(...(await attempts(long)))).toBe(1);
  expect(Date.now() - started).toBeLessThan(120_000);
});

/** A 1 TiB data file of zeros that takes no disk: hashing it takes far longer than any test. */
function terabyteFile(name: string): string {
  const file = path.join(h.dir, name);
  writeFileSync(file, '');
  truncateSync(file, 2 ** 40);
  return file;
}

test('(c) `wmss cancel` stops a step busy hashing a huge data file within the heartbeat interval', async () => {
  const handle = await startPipeline(h.client, config('cancel-digest', terabyteFile('cancel.jsonl'), GPU_BIG));
  await waitUntil('a step hashing the data file', () => runningStep(handle), 60_000, 200);
  await new Promise((r) => setTimeout(r, 2000));
  const cancelled = Date.now();
  await handle.cancel();
  const err = await handle.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  const tookMs = Date.now() - cancelled;
  expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
  // the cancel reaches the activity with the next heartbeat reply, the digest stops at its next chunk
  expect(tookMs).toBeLessThan((2 * HEARTBEAT_S + 5) * 1000);
  const p = await handle.query(progressQuery);
  expect(p.steps.filter((s) => s.id === 'entropy0' || s.id === 'sft').map((s) => s.state)).toContain('cancelled');
});

/** SIGTERM to a worker process; resolves with the ms it took to exit (Infinity: not within SHUTDOWN_S + 30 s). */
async function sigterm(worker: WorkerProcess): Promise<number> {
  const exited = new Promise<number>((resolve) => worker.child.once('exit', () => resolve(Date.now())));
  const signalled = Date.now();
  process.kill(worker.pid, 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<number>(
    (r) => (timer = setTimeout(() => r(Number.POSITIVE_INFINITY), (SHUTDOWN_S + 30) * 1000)),
  );
  const tookMs = (await Promise.race([exited, gaveUp])) - signalled;
  clearTimeout(timer);
  return tookMs;
}

test('(d) SIGTERM stops a worker within its shutdown grace while a step runs', async () => {
  const handle = await startPipeline(h.client, config('sigterm-digest', terabyteFile('sigterm.jsonl'), GPU_BIG));
  await waitUntil('a step hashing the data file', () => runningStep(handle), 60_000, 200);
  await new Promise((r) => setTimeout(r, 2000));
  // the digest stops at its next chunk: far inside the grace; past the grace the SDK gives up (exit anyway)
  expect(await sigterm(bigGpu)).toBeLessThan(SHUTDOWN_S * 1000);
  await handle.terminate('test over');
});
