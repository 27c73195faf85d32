/**
 * Ten pipelines at once on one dev server, each with its own run dir: all complete, and nothing
 * of one run reaches another (artifacts, manifests, logs, kernel job files, the activity inputs in
 * each history). Real workers and kernels on the tiny model, with a config cut down to the
 * minimum (64 training records, one optimizer step per stage, four eval rows, no baselines), so
 * the kernels' start-up (Python, torch and transformers imports: about 8 CPU seconds each, 50
 * kernels) dominates. The wall and CPU times are printed and written to
 * .wmss/test-reports/concurrent-runs.json.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NativeConnection } from '@temporalio/worker';
import { createGpuWorkers } from '../../workers/createWorkers';
import { startPipeline } from '../../client/commands/start';
import { REPO_ROOT } from '../../activities/repoPaths';
import { lockDir } from '../../activities/runLock';
import * as A from '../../pipeline/artifacts';
import type { RunConfig } from '../../pipeline/config';
import { activeSteps } from '../../pipeline/steps';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { startHarness, tinyRunConfig, type Harness } from '../../testkit/harness';

jest.setTimeout(900_000);

const RUNS = 10;
let h: Harness;
let second: NativeConnection | undefined;

/** The first 64 records of the tiny data set: two global batches, enough for every step. */
const MICRO_ROWS = 64;

/** The smallest config that still runs every step for real (dataFile: a MICRO_ROWS-record file). */
export function microRunConfig(assets: string, runDir: string, runName: string, dataFile: string): RunConfig {
  const base = tinyRunConfig(assets, runDir, runName);
  const training = { maxSteps: 1, saveEvery: 0 };
  return {
    ...base,
    dataFile,
    sft: { ...base.sft, ...training },
    joint: { ...base.joint, ...training },
    eval: {
      ...base.eval,
      baselines: false,
      benchmarks: base.eval.benchmarks.map((b) => ({ ...b, limit: 4, maxNewTokens: 16 })),
    },
  };
}

beforeAll(async () => {
  h = await startHarness();
  // a second GPU worker (CPU devices, its own connection as a second process would have): two
  // kernels at a time on the 2-core CI machine
  second = await NativeConnection.connect({ address: h.server.address });
  const more = await createGpuWorkers({ connection: second, devices: { kind: 'cpu' }, threads: 1 });
  h.workers.push(...more);
  h.running.push(...more.map((w) => w.run()));
  const lines = readFileSync(path.join(h.assets, 'data', 'train.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean);
  writeFileSync(microData(), `${lines.slice(0, MICRO_ROWS).join('\n')}\n`);
}, 300_000);

const microData = () => path.join(h.dir, `train-${MICRO_ROWS}.jsonl`);

/** CPU seconds of this process and of its reaped children (the kernels), from /proc (Linux). */
function cpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  // utime, stime, cutime, cstime: fields 14-17 of stat(5), in clock ticks (100 a second on Linux)
  return fields.slice(11, 15).reduce((sum, v) => sum + Number(v), 0) / 100;
}

afterAll(async () => {
  await h?.stop();
  await second?.close();
});

/** Every regular file under `dir`. */
function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : e.isFile() ? [path.join(dir, e.name)] : [],
  );
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

test(`${RUNS} pipelines on one server with distinct run dirs all complete, with no cross-talk`, async () => {
  const configs = Array.from({ length: RUNS }, (_, i) =>
    microRunConfig(h.assets, path.join(h.dir, `run-${i}`), `it-concurrent-${i}`, microData()),
  );
  const started = Date.now();
  const cpuAtStart = cpuSeconds();
  const handles = await Promise.all(configs.map((c) => startPipeline(h.client, c)));
  const finishedAt: number[] = [];
  const results = await Promise.all(
    handles.map((hd, i) => hd.result().then((r) => ((finishedAt[i] = Date.now()), r as PipelineResult))),
  );
  const wallSeconds = (Date.now() - started) / 1000;
  const cpu = cpuSeconds() - cpuAtStart;

  const runDirs = configs.map((c) => c.runDir);
  for (const [i, config] of configs.entries()) {
    const r = results[i];
    const others = runDirs.filter((d) => d !== config.runDir);
    expect(r.runDir).toBe(config.runDir);
    expect(r.runName).toBe(config.runName);
    for (const step of activeSteps(config)) {
      expect(r.steps[step.id].cached).toBe(false);
      // every manifest is in this run dir, names outputs inside it, and they are there
      const manifest = JSON.parse(readFileSync(path.join(config.runDir, A.manifestPath(step.id)), 'utf8'));
      expect(manifest.result.stepId).toBe(step.id);
      expect(manifest.result.cacheKey).toBe(r.steps[step.id].cacheKey);
      for (const out of Object.values<{ path: string }>(manifest.outputs)) {
        expect(path.isAbsolute(out.path) || out.path.split('/').includes('..')).toBe(false);
        expect(existsSync(path.join(config.runDir, out.path))).toBe(true);
      }
    }
    // one log per kernel step, in this run's logs/
    for (const step of ['entropy0', 'sft', 'entropy1', 'joint', 'evaluate'])
      expect(statSync(path.join(config.runDir, A.LOGS_DIR, `${step}.log`)).isFile()).toBe(true);
    // no text file of this run (logs, kernel jobs, manifests, configs, results) names another run's dir
    const texts = walk(config.runDir).filter(
      (f) => /\.(log|json|jsonl|txt|md)$/.test(f) && statSync(f).size < 5_000_000,
    );
    expect(texts.length).toBeGreaterThan(20);
    const jobs = texts.filter((f) => f.includes(`${path.sep}.wmss${path.sep}jobs${path.sep}`));
    expect(jobs.length).toBeGreaterThanOrEqual(5);
    for (const f of texts) {
      const text = readFileSync(f, 'utf8');
      for (const other of others)
        if (text.includes(`${other}/`) || text.includes(`"${other}"`))
          throw new Error(`${f} mentions another run's dir ${other}`);
    }
    for (const f of jobs) expect(readFileSync(f, 'utf8')).toContain(config.runDir);
    // the lock was taken and released
    expect(existsSync(lockDir(config.runDir))).toBe(true);
    expect(readdirSync(lockDir(config.runDir)).filter((f) => f.endsWith('.json'))).toEqual([]);

    // every activity this run scheduled was given this run's dir, and only this run's
    const history = await h.client.workflow.getHandle(handles[i].workflowId).fetchHistory();
    const scheduled = history.events!.filter((e) => e.activityTaskScheduledEventAttributes);
    expect(scheduled.length).toBeGreaterThanOrEqual(activeSteps(config).length + 2); // steps + lock + release
    for (const e of scheduled) {
      const payload = e.activityTaskScheduledEventAttributes!.input!.payloads![0];
      const input = JSON.parse(Buffer.from(payload.data!).toString()) as {
        config?: { runDir: string };
        runDir?: string;
      };
      expect(input.config?.runDir ?? input.runDir).toBe(config.runDir);
    }
  }
  // same config apart from name and dir: the same results, bit for bit, in every run. (Not the
  // same cache keys after step 1: a training checkpoint's trainer_state.json records tokens/s,
  // so its digest, which the later steps' keys include, differs from run to run.)
  const digests = (file: string) => new Set(configs.map((c) => sha256(path.join(c.runDir, file))));
  expect(digests(A.ENTROPY_0).size).toBe(1);
  expect(digests(A.ENTROPY_MERGED).size).toBe(1);
  const extracted = (c: RunConfig) =>
    JSON.parse(readFileSync(path.join(c.runDir, A.manifestPath('extract')), 'utf8')).outputs.model.sha256 as string;
  expect(new Set(configs.map(extracted)).size).toBe(1);
  expect(new Set(results.map((r) => JSON.stringify(r.accuracy))).size).toBe(1);

  const report = {
    test: 'concurrentRuns',
    runs: RUNS,
    wallSeconds,
    // CPU time of the test process and its kernels: the wall time on an otherwise idle machine is
    // about this divided by the number of cores
    cpuSeconds: Math.round(cpu),
    dataRows: MICRO_ROWS,
    perRunSeconds: finishedAt.map((t) => (t - started) / 1000),
    gpuWorkers: 2,
    cpus: os.cpus().length,
    date: new Date().toISOString(),
  };
  const dir = path.join(REPO_ROOT, '.wmss', 'test-reports');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'concurrent-runs.json'), `${JSON.stringify(report, null, 2)}\n`);
  console.log(
    `${RUNS} concurrent pipelines: ${wallSeconds.toFixed(1)} s wall, ${cpu.toFixed(0)} CPU s (${os.cpus().length} CPUs, 2 CPU "GPU" workers)`,
  );
});
