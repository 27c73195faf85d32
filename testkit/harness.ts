/**
 * What the integration suites share: a real `temporal server start-dev` on a free port with a
 * SQLite file, real workers in this process, and the tiny model + arithmetic data built once by
 * the real make-tiny kernel.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { RunConfig, type RunConfigInput } from '../pipeline/config';
import { makeTinyAssets } from '../client/commands/demo';
import { startDevServer, type DevServer, type DevServerOptions } from '../client/devServer';
import { createControlWorker, createGpuWorkers } from '../workers/createWorkers';
import { REPO_ROOT } from '../activities/repoPaths';
import { metricsTelemetry } from '../workers/telemetry';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * startDevServer on a free port. A free port can be taken by another process before the server
 * binds it (parallel test runs): then it tries again on another, three times in all.
 */
export async function startDevServerOnFreePort(opts: Omit<DevServerOptions, 'port'>): Promise<DevServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDevServer({
        ...opts,
        port: await freePort(),
        uiPort: opts.uiPort && attempt > 1 ? await freePort() : opts.uiPort,
      });
    } catch (err) {
      if (attempt >= 3 || !/exited early/.test(String(err))) throw err;
    }
  }
}

export interface Harness {
  dir: string;
  server: DevServer;
  dbFile: string;
  client: Client;
  connection: NativeConnection;
  workers: Worker[];
  running: Promise<void>[];
  assets: string;
  stop(): Promise<void>;
}

/** Tiny assets live in the checkout (ignored by git) so repeated test runs build them once. */
export const ASSETS_DIR = path.join(REPO_ROOT, '.wmss', 'test-assets');

/** Builds the tiny model and data into ASSETS_DIR, or reuses them; returns ASSETS_DIR. */
export async function ensureTinyAssets(): Promise<string> {
  mkdirSync(ASSETS_DIR, { recursive: true });
  await makeTinyAssets(ASSETS_DIR, () => undefined);
  return ASSETS_DIR;
}

let runtimeInstalled = false;

/**
 * uiPort: also serve the Web UI (the browser test); default headless. metricsPort: the workers of
 * this process serve Prometheus metrics on 127.0.0.1:<port> (the first harness of a process decides).
 */
export async function startHarness(
  opts: { workers?: boolean; uiPort?: number; metricsPort?: number } = {},
): Promise<Harness> {
  if (!runtimeInstalled) {
    const metrics = opts.metricsPort ? { port: opts.metricsPort, host: '127.0.0.1' } : undefined;
    Runtime.install({ logger: new DefaultLogger('WARN'), telemetryOptions: metricsTelemetry(metrics) });
    runtimeInstalled = true;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-it-'));
  const dbFile = path.join(dir, 'temporal.db');
  const server = await startDevServerOnFreePort({
    dbFile,
    uiPort: opts.uiPort,
    logFile: path.join(dir, 'temporal.log'),
  });
  const client = new Client({ connection: await Connection.connect({ address: server.address }) });
  const connection = await NativeConnection.connect({ address: server.address });
  await ensureTinyAssets();
  const workers =
    opts.workers === false
      ? []
      : [
          await createControlWorker({ connection }),
          ...(await createGpuWorkers({ connection, devices: { kind: 'cpu' }, threads: 1 })),
        ];
  const running = workers.map((w) => w.run());
  return {
    dir,
    server,
    dbFile,
    client,
    connection,
    workers,
    running,
    assets: ASSETS_DIR,
    async stop() {
      workers.forEach((w) => w.getState() === 'RUNNING' && w.shutdown());
      await Promise.allSettled(running);
      await connection.close();
      await client.connection.close();
      await server.stop();
    },
  };
}

/** A run config small enough for CI: a few optimizer steps per stage, a handful of eval rows. */
export function tinyRunConfig(
  assets: string,
  runDir: string,
  runName: string,
  overrides: Partial<RunConfigInput> = {},
): RunConfig {
  const training = {
    lr: 3e-3,
    microBatch: 16,
    gradAccum: 2,
    maxLength: 128,
    maxSteps: 6,
    saveEvery: 3,
    gradientCheckpointing: false,
  };
  return RunConfig.parse({
    runName,
    runDir,
    baseModel: path.join(assets, 'tiny-qwen3'),
    dataFile: path.join(assets, 'data', 'train.jsonl'),
    device: 'cpu',
    entropy: { maxLength: 96, batchTokens: 4096 },
    sft: training,
    joint: training,
    eval: {
      batchSize: 32,
      benchmarks: [
        {
          name: 'arithmetic',
          path: path.join(assets, 'data', 'test.jsonl'),
          format: 'gsm8k',
          maxInputTokens: 256,
          maxNewTokens: 24,
          limit: 24,
        },
      ],
    },
    ...overrides,
  });
}

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end without blocking this process's event loop; SIGKILL after timeoutMs. */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? REPO_ROOT,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Polls fn every 500 ms until it returns something truthy; throws naming `what` after timeoutMs. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
