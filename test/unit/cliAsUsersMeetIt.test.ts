/**
 * Issue 21, the parts that need no server: config files users get wrong (duplicate keys, a BOM,
 * a trailing comma, absurd numbers, a dangerous run dir), CLI arguments, the worker's GPU check,
 * Web UI links, `report` into a directory that is not a run dir, and the examples/ configs.
 * Everything goes through the real CLI program or the parser `wmss start` uses.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Long from 'long';
import { ActivityFailure, ApplicationFailure, RetryState } from '@temporalio/common';
import { buildProgram } from '../../client/cli';
import { configReference } from '../../client/configReference';
import { webUiLink, temporalTarget } from '../../temporal/connection';
import { readRunConfig } from '../../client/runConfigFile';
import { RunConfig } from '../../pipeline/config';
import * as runConfigFile from '../../client/runConfigFile';
import { cleanupTmp, tmpDir } from './helpers/tmp';

const ROOT = path.join(__dirname, '../..');
afterAll(cleanupTmp);

/** Runs the CLI in-process; resolves with what it printed or rejects with its error (commander's included). */
async function cli(...args: string[]): Promise<string> {
  const lines: string[] = [];
  const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
  const program = buildProgram().exitOverride();
  const silence = { writeErr: () => undefined, writeOut: (s: string) => void lines.push(s) };
  program.configureOutput(silence);
  program.commands.forEach((c) => c.exitOverride().configureOutput(silence));
  try {
    await program.parseAsync(['node', 'wmss', ...args]);
  } finally {
    log.mockRestore();
  }
  return lines.join('\n');
}

async function errorOf(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error');
}

const base = (dir: string) => ({
  runName: 'u',
  runDir: path.join(dir, 'run'),
  baseModel: path.join(dir, 'm'),
  dataFile: path.join(dir, 'd.jsonl'),
});

function configFile(text: string): string {
  const dir = tmpDir();
  const file = path.join(dir, 'run.json');
  writeFileSync(file, text);
  return file;
}

describe('config files (defect 6)', () => {
  test('a repeated key is refused, naming the key and both places', async () => {
    const dir = tmpDir();
    const text = `{\n  "runName": "u",\n  "runDir": ${JSON.stringify(path.join(dir, 'run'))},\n  "baseModel": "/m",\n  "dataFile": "/d",\n  "sft": {\n    "epochs": 1,\n    "epochs": 3\n  }\n}\n`;
    const err = await errorOf(cli('plan', configFile(text)));
    expect(err.message).toMatch(/run\.json:8:5: .*duplicate key "sft\.epochs" \(first at 7:5\)/);
  });

  test('a UTF-8 byte-order mark is skipped', () => {
    const dir = tmpDir();
    const file = configFile('\ufeff' + JSON.stringify(base(dir)));
    expect(readRunConfig(file).runName).toBe('u');
  });

  test('a JSON syntax error says line and column, not a character position', async () => {
    const dir = tmpDir();
    const text = JSON.stringify(base(dir), null, 2).replace(/\n}$/, ',\n}');
    const err = await errorOf(cli('plan', configFile(text)));
    expect(err.message).toMatch(/run\.json:6:1: invalid JSON/);
    expect(err.message).not.toMatch(/position/);
  });

  test('schema errors are `file:line:col: field: message`, one per problem', async () => {
    const dir = tmpDir();
    const text = JSON.stringify({ ...base(dir), sft: { epochs: 1e300 }, resample: { multiplier: 1e9 } }, null, 2);
    const file = configFile(text);
    const err = await errorOf(cli('plan', file));
    expect(err.message).toContain(`${file}:7:5: sft.epochs: Too big`);
    expect(err.message).toContain(`${file}:10:5: resample.multiplier: Too big`);
  });

  test('numbers far beyond any real run are refused by the schema, and the reference shows the bounds', () => {
    const dir = tmpDir();
    for (const over of [
      { sft: { epochs: 1e300 } },
      { joint: { maxSteps: 1e12 } },
      { resample: { multiplier: 1e9 } },
      { eval: { batchSize: 1e9 } },
      { entropy: { maxLength: 1e9 } },
      { sft: { seed: 2 ** 40 } },
    ]) {
      expect(() => readRunConfig(configFile(JSON.stringify({ ...base(dir), ...over })))).toThrow(/Too big/);
    }
    expect(configReference()).toMatch(/\| `sft\.epochs` \| number \(> 0, ≤ 1000\) \|/);
    expect(configReference()).toMatch(/\| `resample\.multiplier` \| number \(> 0, ≤ 100\) \|/);
  });

  test('dangerous run dirs are refused at `plan` and `start`, with exit code 2 semantics (ConfigFileError)', async () => {
    const dir = tmpDir();
    const notOurs = path.join(dir, 'project');
    mkdirSync(notOurs);
    writeFileSync(path.join(notOurs, 'thesis.tex'), 'x');
    for (const runDir of ['/', '/etc', '/usr/lib/wmss', '/proc/1', os.homedir(), notOurs]) {
      const file = configFile(JSON.stringify({ ...base(dir), runDir }));
      for (const cmd of ['plan', 'start']) {
        const err = await errorOf(cli(cmd, file));
        expect(err).toBeInstanceOf(runConfigFile.ConfigFileError);
        expect(err.message).toMatch(/run\.json:1:\d+: runDir: /);
      }
    }
    expect(readdirSync(notOurs)).toEqual(['thesis.tex']);
  });

  test("a schedule's run dir holds its runs' dirs: non-empty is fine there, a system dir is not", () => {
    const dir = tmpDir();
    mkdirSync(path.join(dir, 'sched', '2026-11-25T030405Z'), { recursive: true });
    const ok = configFile(JSON.stringify({ ...base(dir), runDir: path.join(dir, 'sched') }));
    expect(runConfigFile.readRunConfigForRun(ok, { scheduled: true }).runDir).toBe(path.join(dir, 'sched'));
    expect(() => runConfigFile.readRunConfigForRun(ok)).toThrow(/is not empty/);
    expect(() =>
      runConfigFile.readRunConfigForRun(configFile(JSON.stringify({ ...base(dir), runDir: '/var' })), {
        scheduled: true,
      }),
    ).toThrow(/runDir: \/var is a directory shared/);
  });

  test('an empty dir, a new dir and an existing run dir are fine', async () => {
    const dir = tmpDir();
    const empty = path.join(dir, 'empty');
    mkdirSync(empty);
    const run = path.join(dir, 'old-run');
    mkdirSync(path.join(run, '.wmss'), { recursive: true });
    writeFileSync(path.join(run, 'entropy_0.jsonl'), '');
    for (const runDir of [empty, run, path.join(dir, 'new', 'run')]) {
      expect(await cli('plan', configFile(JSON.stringify({ ...base(dir), runDir })))).toContain(`run u in ${runDir}`);
    }
  });
});

describe('CLI arguments', () => {
  test('`status --limit abc` is refused before anything connects', async () => {
    const err = await errorOf(cli('status', '--limit', 'abc'));
    expect(err.message).toMatch(/--limit.*expected a positive whole number, got "abc"/);
  });

  test('`worker --help` says which worker kind each flag is for', async () => {
    const help = buildProgram()
      .commands.find((c) => c.name() === 'worker')!
      .helpInformation();
    for (const flag of [
      '--gpus',
      '--threads',
      '--control-queue',
      '--gpu-queue',
      '--onnx-queue',
      '--pool',
      '--host',
      '--verbose',
    ]) {
      expect(help).toMatch(new RegExp(`${flag}[^\\n]*\\s+\\[(control|gpu|onnx)(, (control|gpu|onnx))*\\]`));
    }
  });

  test('a GPU worker on a host without that GPU is refused; cpu still works', async () => {
    const { checkDevicesPresent, countHostGpus } = await import('../../workers/hostChecks');
    expect(() => checkDevicesPresent({ kind: 'cuda', ids: [0] }, undefined)).toThrow(/no NVIDIA GPU.*--gpus cpu/);
    expect(() => checkDevicesPresent({ kind: 'cuda', ids: [0, 3] }, 2)).toThrow(
      /device 3 not on this host, which has 2 GPUs/,
    );
    expect(() => checkDevicesPresent({ kind: 'cuda', ids: [1] }, 2)).not.toThrow();
    expect(() => checkDevicesPresent({ kind: 'cpu' })).not.toThrow();
    if (countHostGpus() === undefined) {
      // the real command on this (GPU-less) host: refused before it connects anywhere
      const err = await errorOf(cli('--address', '127.0.0.1:1', 'worker', 'gpu', '--gpus', '0'));
      expect(err.message).toMatch(/--gpus 0: this host has no NVIDIA GPU/);
    }
  });

  test('the Web UI link follows the server: gRPC port + 1000, or WMSS_UI_URL', () => {
    const saved = process.env.WMSS_UI_URL;
    delete process.env.WMSS_UI_URL;
    try {
      expect(webUiLink('w', temporalTarget({ address: '127.0.0.1:7300' }))).toBe(
        'http://127.0.0.1:8300/namespaces/default/workflows/w',
      );
      expect(webUiLink('w', temporalTarget({ address: 'localhost:7233' }))).toBe(
        'http://localhost:8233/namespaces/default/workflows/w',
      );
      expect(webUiLink('w', temporalTarget({ address: '127.0.0.1:7300' }), 'http://127.0.0.1:9999')).toBe(
        'http://127.0.0.1:9999/namespaces/default/workflows/w',
      );
      process.env.WMSS_UI_URL = 'https://temporal.example.org/';
      expect(webUiLink('w', temporalTarget({ address: 'x:7233' }))).toBe(
        'https://temporal.example.org/namespaces/default/workflows/w',
      );
    } finally {
      if (saved === undefined) delete process.env.WMSS_UI_URL;
      else process.env.WMSS_UI_URL = saved;
    }
  });

  test('`report` refuses a directory that is not a run dir and writes nothing there', async () => {
    const dir = tmpDir();
    writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    const err = await errorOf(cli('report', dir));
    expect(err.message).toMatch(/is not a wmss run dir/);
    expect(existsSync(path.join(dir, 'report'))).toBe(false);
  });
});

describe("the workflow's own failure (defect 5)", () => {
  test("the run's failure is unwrapped to its type, message and step", async () => {
    const { unwrapFailure, formatFailure } = await import('../../client/commands/failure');
    const inner = ApplicationFailure.create({
      type: 'RunDirLocked',
      message: 'run wmss-a holds /data/r',
      nonRetryable: true,
    });
    const activity = new ActivityFailure(
      'Activity task failed',
      'lockRunDir',
      'lock',
      RetryState.NON_RETRYABLE_FAILURE,
      'w',
      inner,
    );
    const top = ApplicationFailure.create({
      type: 'RunDirLocked',
      message: 'run wmss-a holds /data/r',
      nonRetryable: true,
      cause: activity,
    });
    expect(formatFailure(unwrapFailure(top))).toBe('RunDirLocked: run wmss-a holds /data/r (activity lockRunDir)');
    const step = new ActivityFailure(
      'Activity task failed',
      'sft',
      'sft',
      RetryState.MAXIMUM_ATTEMPTS_REACHED,
      'w',
      ApplicationFailure.create({ type: 'KernelCrashed', message: 'exit 1' }),
    );
    expect(unwrapFailure(step)).toEqual({
      type: 'KernelCrashed',
      message: 'exit 1',
      step: 'step 1 (Stage-1 SFT of the base → m1)',
    });
  });

  test('a running step whose worker went quiet, or that waits for one, says so', async () => {
    const { liveness } = await import('../../client/commands/status');
    const now = Date.parse('2026-01-01T00:10:00Z');
    expect(
      liveness(
        {
          stepId: 'sft',
          activityType: 'sft',
          attempt: 1,
          state: 'started',
          lastHeartbeatAt: now - 45_000,
          worker: 'gpu@h1',
        },
        now,
      ),
    ).toMatch(/^last heartbeat 45s ago from gpu@h1/);
    expect(
      liveness({ stepId: 'sft', activityType: 'sft', attempt: 1, state: 'started', lastHeartbeatAt: now - 3_000 }, now),
    ).toBe('');
    expect(
      liveness(
        {
          stepId: 'sft',
          activityType: 'sft',
          attempt: 2,
          state: 'scheduled',
          scheduledAt: now - 70_000,
          lastFailure: 'activity Heartbeat timeout',
        },
        now,
      ),
    ).toBe('waiting for a worker for 1m10s (attempt 2) after: activity Heartbeat timeout');
  });
});

describe('report step times (defect 7)', () => {
  test("a step's time runs from its first scheduling to its last attempt's completion", async () => {
    const { stepSpansFromHistory } = await import('../../client/commands/historyProgress');
    const t = (s: number) => ({ seconds: Long.fromNumber(1_700_000_000 + s), nanos: 0 });
    const events = [
      { eventId: 5, eventTime: t(0), activityTaskScheduledEventAttributes: { activityId: 'sft' } },
      { eventId: 9, eventTime: t(300), activityTaskStartedEventAttributes: { scheduledEventId: 5, attempt: 3 } },
      { eventId: 10, eventTime: t(400), activityTaskCompletedEventAttributes: { scheduledEventId: 5 } },
    ];
    const spans = stepSpansFromHistory(events as never);
    expect(spans.sft).toEqual({
      startedAt: new Date(1_700_000_000_000).toISOString(),
      finishedAt: new Date(1_700_000_400_000).toISOString(),
      attempts: 3,
    });
  });

  test("the report takes those spans over the manifest's last-attempt timings", async () => {
    const { collectReportData } = await import('../../client/report/collect');
    const { manifestFile } = await import('../../activities/store/manifest');
    const runDir = tmpDir();
    const file = manifestFile(runDir, 'sft');
    mkdirSync(path.dirname(file), { recursive: true });
    const result = {
      stepId: 'sft',
      host: 'h',
      cached: false,
      outputs: {},
      metrics: {},
      cacheKey: 'k',
      durationMs: 100_000,
    };
    // the attempt that succeeded ran the last 100 s; two failed attempts and back-off came before
    writeFileSync(
      file,
      JSON.stringify({
        format: 'wmss-step/1',
        step: 'sft',
        cacheKey: 'k',
        keyMaterial: {},
        inputs: {},
        mode: 'atomic',
        wmssFlowVersion: '0',
        host: 'h',
        outputs: {},
        result,
        timings: {
          startedAt: '2026-01-01T00:05:00.000Z',
          finishedAt: '2026-01-01T00:06:40.000Z',
          produceMs: 0,
          publishMs: 0,
          digestMs: 0,
        },
      }),
    );
    const lastAttempt = await collectReportData(runDir);
    expect(lastAttempt.steps.find((st) => st.id === 'sft')!.ms).toBe(100_000);
    const all = await collectReportData(runDir, {
      spans: { sft: { startedAt: '2026-01-01T00:00:00.000Z', finishedAt: '2026-01-01T00:06:40.000Z', attempts: 3 } },
    });
    expect(all.steps.find((st) => st.id === 'sft')).toMatchObject({ ms: 400_000, attempts: 3 });
  });
});

describe('examples/ (defect 7)', () => {
  test('both examples pass the parser `wmss start` uses; the CPU one is sized for a CPU', () => {
    for (const name of ['cpu-small.json', 'gpu-cluster.json'])
      expect(() => readRunConfig(path.join(ROOT, 'examples', name))).not.toThrow();
    const cpu = readRunConfig(path.join(ROOT, 'examples', 'cpu-small.json'));
    expect(cpu.device).toBe('cpu');
    expect(cpu.baseModel).toBe('runs/demo/assets/tiny-qwen3');
    expect(cpu.sft.maxSteps! * cpu.sft.microBatch).toBeLessThan(20_000);
    const gpu = readRunConfig(path.join(ROOT, 'examples', 'gpu-cluster.json'));
    expect(gpu.sft.microBatch * gpu.sft.gradAccum).toBe(256);
    expect(path.isAbsolute(gpu.runDir)).toBe(true);
  });

  test("the README's minimal config parses as written and points to the runnable example", () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = /A minimal config[\s\S]*?```json\n([\s\S]*?)```/.exec(readme)!;
    expect(RunConfigParse(JSON.parse(section[1]))).toBe(true);
    expect(section[0]).toContain('wmss start examples/cpu-small.json');
    expect(section[0]).toContain('examples/gpu-cluster.json');
  });
});

function RunConfigParse(v: unknown): boolean {
  return RunConfig.safeParse(v).success;
}
