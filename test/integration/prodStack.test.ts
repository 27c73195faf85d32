/**
 * The production stack of docker-compose.yml, started for real without containers by
 * scripts/prod-stack.sh: PostgreSQL, compose's schema job, the Temporal server built from
 * go.temporal.io/server at the version compose pins, compose's namespace job. Compose's two worker
 * commands run as child processes (the GPU worker with WMSS_GPUS=cpu), the `wmss` CLI drives the
 * tiny pipeline, the Temporal server is restarted in the middle of the run, a second run must be
 * all cache hits, and the history is read back from PostgreSQL with psql.
 *
 * Needs scripts/setup-prod-stack.sh (run by `make test`): the server build and PostgreSQL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { readProdStackSpec } from '../../scripts/prodStackSpec';
import { activeSteps } from '../../pipeline/steps';
import type { PipelineResult } from '../../pipeline/workflowApi';
import { temporalCli } from '../../client/devServer';
import { REPO_ROOT } from '../../activities/repoPaths';
import { metricSamples } from '../../testkit/prometheusText';
import { ASSETS_DIR, ensureTinyAssets, runCommand, tinyRunConfig, until } from '../../testkit/harness';

jest.setTimeout(900_000);

const STACK = path.join(REPO_ROOT, 'scripts', 'prod-stack.sh');
const WMSS = path.join(REPO_ROOT, 'bin', 'wmss');
const RUN = 'it-prod';
const WORKFLOW_ID = `wmss-${RUN}`;
const spec = readProdStackSpec(REPO_ROOT, { ...process.env, WMSS_GPUS: 'cpu' });

let dir: string;
let state: string;
let stack: Record<string, string>;
let workers: ChildProcess[] = [];
let configFile: string;

const readStackEnv = () =>
  Object.fromEntries(
    readFileSync(path.join(state, 'stack.env'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const cliEnv = () => ({
  ...process.env,
  TEMPORAL_ADDRESS: stack.TEMPORAL_ADDRESS,
  TEMPORAL_NAMESPACE: stack.TEMPORAL_NAMESPACE,
  WMSS_UI_URL: '',
});
const wmss = (args: string[], timeoutMs = 60_000) => runCommand(WMSS, args, { cwd: dir, env: cliEnv(), timeoutMs });
const stackCmd = (cmd: string) => runCommand('bash', [STACK, cmd, state], { timeoutMs: 240_000 });
/** psql against the stack's cluster: rows as arrays of fields. */
async function psql(db: string, sql: string): Promise<string[][]> {
  const r = await runCommand('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-tA', '-F', '\t', '-d', db, '-c', sql], {
    env: {
      ...process.env,
      PGHOST: stack.PGHOST,
      PGPORT: stack.PGPORT,
      PGUSER: stack.PGUSER,
      PGPASSWORD: stack.PGPASSWORD,
    },
  });
  if (r.code !== 0) throw new Error(`psql ${db}: ${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t'));
}

/** One worker service of compose: its command (entrypoint + command) and environment, pointed at the stack. */
function startWorker(name: string): ChildProcess {
  const w = spec.workers[name];
  const log = openSync(path.join(dir, `${name}.log`), 'a');
  return spawn(w.argv[0], w.argv.slice(1), {
    cwd: REPO_ROOT,
    env: { ...process.env, ...w.env, TEMPORAL_ADDRESS: stack.TEMPORAL_ADDRESS },
    stdio: ['ignore', log, log],
  });
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-prod-'));
  state = path.join(dir, 'stack');
  const [assets, started] = await Promise.all([ensureTinyAssets(), stackCmd('start')]);
  expect(started.stderr).toBe('');
  expect(started.code).toBe(0);
  stack = readStackEnv();
  workers = ['wmss-control', 'wmss-gpu'].map(startWorker);
  for (const name of ['wmss-control', 'wmss-gpu']) {
    await until(
      `${name} to serve`,
      async () => / worker .*serving /.test(readFileSync(path.join(dir, `${name}.log`), 'utf8')),
      120_000,
    );
  }
  configFile = path.join(dir, 'run.json');
  writeFileSync(configFile, JSON.stringify(tinyRunConfig(assets, path.join(dir, 'run'), RUN), null, 2));
}, 300_000);

afterAll(async () => {
  for (const w of workers) w.kill('SIGINT');
  await Promise.all(
    workers.map((w) => (w.exitCode !== null ? Promise.resolve() : new Promise((r) => w.once('exit', r)))),
  );
  if (state) await stackCmd('stop');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the stack runs the versions compose pins, with its namespace and search attributes', async () => {
  const connection = await Connection.connect({ address: stack.TEMPORAL_ADDRESS });
  try {
    expect((await connection.workflowService.getSystemInfo({})).serverVersion).toBe(spec.temporalVersion);
  } finally {
    await connection.close();
  }
  expect((await psql('postgres', 'show server_version'))[0][0]).toMatch(new RegExp(`^${spec.postgresMajor}\\.`));
  expect((await psql(spec.databases.history, 'select name from namespaces order by name')).flat()).toContain(
    spec.namespace,
  );
  const attrs = await runCommand(temporalCli(), [
    'operator',
    'search-attribute',
    'list',
    '--namespace',
    spec.namespace,
    '--address',
    stack.TEMPORAL_ADDRESS,
  ]);
  for (const a of spec.searchAttributes)
    expect(attrs.stdout).toMatch(new RegExp(`^\\s*${a.name}\\s+${a.type}\\s*$`, 'm'));
  // compose's health check of the workers, as the container would run it
  const [cmd, ...args] = spec.workers['wmss-control'].health;
  const health = await runCommand(cmd, args, { env: cliEnv() });
  expect(health.stderr).toBe('');
  expect(health.code).toBe(0);
});

let first: PipelineResult;

test('wmss start; the Temporal server restarts mid-run; the run completes', async () => {
  const started = await wmss(['start', configFile]);
  expect(started.stderr).toBe('');
  expect(started.stdout).toContain(`started ${WORKFLOW_ID}`);

  // Mid-run: Stage-1 SFT (a kernel on the "GPU" worker, heartbeating) is running.
  await until('step 1 to run', async () => /\n1 .* running /.test((await wmss(['status', RUN])).stdout), 240_000);
  const oldPid = Number(stack.WMSS_STACK_SERVER_PID);
  const restarted = await stackCmd('restart-server');
  expect(restarted.code).toBe(0);
  stack = readStackEnv();
  expect(Number(stack.WMSS_STACK_SERVER_PID)).not.toBe(oldPid);
  expect(alive(oldPid)).toBe(false);

  const result = await wmss(['result', RUN], 600_000);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  first = JSON.parse(result.stdout) as PipelineResult;
  const config = JSON.parse(readFileSync(configFile, 'utf8'));
  for (const step of activeSteps(config)) expect(first.steps[step.id].cached).toBe(false);
  expect(Object.keys(first.accuracy).sort()).toEqual(['base', 'm1', 'wmss']);

  const status = await wmss(['status', RUN]);
  expect(status.code).toBe(0);
  expect(status.stdout).toMatch(new RegExp(`^run ${RUN} \\(${WORKFLOW_ID}\\): completed`));
  expect(status.stdout).not.toMatch(/ (running|pending|failed) /);
});

test('a second run of the same config is all cache hits', async () => {
  expect(first).toBeDefined();
  const again = await wmss(['start', configFile, '--wait'], 240_000);
  expect(again.code).toBe(0);
  const result = JSON.parse(again.stdout.slice(again.stdout.indexOf('{'))) as PipelineResult;
  const config = JSON.parse(readFileSync(configFile, 'utf8'));
  for (const step of activeSteps(config)) {
    expect(result.steps[step.id].cached).toBe(true);
    expect(result.steps[step.id].cacheKey).toBe(first.steps[step.id].cacheKey);
  }
  expect(result.accuracy).toEqual(first.accuracy);
});

test("compose's worker commands serve Prometheus metrics with the run's step series", async () => {
  expect(first).toBeDefined();
  const seen: string[] = [];
  for (const name of ['wmss-control', 'wmss-gpu']) {
    const argv = spec.workers[name].argv;
    const port = argv[argv.indexOf('--metrics-port') + 1];
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const steps = metricSamples(text, 'wmss_step_duration_seconds_count').filter(
      (s) => s.labels.run_id === WORKFLOW_ID,
    );
    expect(steps.length).toBeGreaterThan(0);
    seen.push(...steps.map((s) => s.labels.step));
  }
  // between them, the two workers ran every step (the control worker the file steps, the GPU one the kernels)
  expect(new Set(seen)).toEqual(new Set(Object.keys(first.steps)));
});

test("both runs' histories and visibility records are in PostgreSQL", async () => {
  expect(first).toBeDefined();
  const id = `'${WORKFLOW_ID}'`;
  // visibility: two closed runs (status 2 = completed) with the workflow's search attributes; SQL
  // visibility stores custom attributes under column aliases (Keyword01…), so their values are checked
  const vis = await psql(
    spec.databases.visibility,
    `select status, history_length, search_attributes::text, trim(run_id) from executions_visibility where workflow_id = ${id} order by start_time`,
  );
  expect(vis.map((r) => r[0])).toEqual(['2', '2']);
  for (const r of vis)
    expect(Object.values(JSON.parse(r[2]))).toEqual(
      expect.arrayContaining([RUN, 'completed', path.join(ASSETS_DIR, 'tiny-qwen3')]),
    );
  // history: each run's event batches, keyed by its run id; the last batch starts at or before the last event
  const hist = await psql(
    spec.databases.history,
    `select encode(e.run_id, 'hex'), count(h.node_id), max(h.node_id), sum(length(h.data)) from executions e join history_node h on h.shard_id = e.shard_id and h.tree_id = e.run_id where e.workflow_id = ${id} group by e.run_id`,
  );
  expect(hist).toHaveLength(2);
  for (const [runIdHex, batches, lastNode, bytes] of hist) {
    const v = vis.find((r) => r[3].replace(/-/g, '') === runIdHex);
    expect(v).toBeDefined();
    expect(Number(batches)).toBeGreaterThan(5);
    expect(Number(lastNode)).toBeLessThanOrEqual(Number(v![1]));
    expect(Number(bytes)).toBeGreaterThan(1000);
  }
});

test('stop ends the server and PostgreSQL it started, by PID', async () => {
  const pids = [Number(stack.WMSS_STACK_SERVER_PID), Number(stack.WMSS_STACK_POSTGRES_PID)];
  expect(pids.every(alive)).toBe(true);
  for (const w of workers) w.kill('SIGINT');
  const stopped = await stackCmd('stop');
  expect(stopped.code).toBe(0);
  expect(pids.filter(alive)).toEqual([]);
});
