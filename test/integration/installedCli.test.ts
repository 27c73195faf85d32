/**
 * The CLI as users run it (issue 21): `npm pack` of this repo, installed with npm into a
 * temporary prefix, and the `wmss` command npm links into <prefix>/bin driven as a child process
 * against a real `temporal server start-dev` with real workers (in this process, as the other
 * integration suites). Covers what only shows up that way: the package must carry dist/, the
 * binary must run main(), failures must reach the terminal with a non-zero exit, and a closed
 * pipe must not print a stack trace.
 *
 * The install takes its dependencies from npm's cache (--prefer-offline; the registry answers
 * for anything missing), about 15 s on a warm cache.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { temporalCli } from '../../client/devServer';
import { runCommand, startHarness, tinyRunConfig, until, type Harness, type Ran } from '../../testkit/harness';

jest.setTimeout(300_000);

const ROOT = path.join(__dirname, '../..');
let h: Harness;
let bin: string;
let pkgDir: string;

/** runCommand with this suite's defaults: the harness's directory and server, no Web UI link. */
function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; cwd?: string; env?: Record<string, string> } = {},
): Promise<Ran> {
  const env = { ...process.env, ...(h && { TEMPORAL_ADDRESS: h.server.address }), WMSS_UI_URL: '', ...opts.env };
  return runCommand(cmd, args, { cwd: opts.cwd ?? h?.dir ?? ROOT, env, timeoutMs: opts.timeoutMs });
}

const wmss = (...args: string[]) => run(bin, args);

/** Starts a long-running command, waits until its output matches, then stops it with SIGINT (as Ctrl-C). */
function runUntil(args: string[], ready: RegExp, timeoutMs = 120_000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      cwd: h.dir,
      env: { ...process.env, TEMPORAL_ADDRESS: h.server.address },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let stopping = false;
    const check = () => {
      if (!stopping && ready.test(stdout + stderr)) {
        stopping = true;
        // a moment for anything printed right after start-up (pollers starting) to show
        setTimeout(() => child.kill('SIGINT'), 2000);
      }
    };
    child.stdout.on('data', (d) => ((stdout += d), check()));
    child.stderr.on('data', (d) => ((stderr += d), check()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const hard = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 15_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      clearTimeout(hard);
      resolve({ code, stdout, stderr });
    });
  });
}

const closed = (id: string) =>
  until(`${id} to close`, async () => {
    const s = (await h.client.workflow.getHandle(id).describe()).status.name;
    return s !== 'RUNNING' && s;
  });

beforeAll(async () => {
  h = await startHarness();
  // What npm would publish: dist/ is git-ignored, so package.json's "files" must name it.
  expect(existsSync(path.join(ROOT, 'dist/client/cli.js'))).toBe(true);
  const packDir = path.join(h.dir, 'pack');
  mkdirSync(packDir);
  const packed = await run('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: ROOT, timeoutMs: 120_000 });
  expect(packed.code).toBe(0);
  const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as {
    filename: string;
    files: { path: string }[];
  }[];
  const files = info[0].files.map((f) => f.path);
  for (const f of [
    'bin/wmss',
    'dist/client/cli.js',
    'dist/workflows/index.js',
    'kernels/wmss_kernels/__init__.py',
    'examples/cpu-small.json',
  ])
    expect(files).toContain(f);
  expect(files.some((f) => f.startsWith('dist/test/') || f.startsWith('test/'))).toBe(false);

  const prefix = path.join(h.dir, 'prefix');
  // The repo's .npmrc skips onnxruntime-node's download of CUDA binaries (from outside the npm
  // registry); an install elsewhere does not read it, so the same setting goes in by environment.
  const installed = await run(
    'npm',
    [
      'install',
      '-g',
      '--prefix',
      prefix,
      path.join(packDir, info[0].filename),
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
    ],
    { cwd: h.dir, timeoutMs: 240_000, env: { npm_config_onnxruntime_node_install: 'skip' } },
  );
  expect(installed.stderr).not.toMatch(/npm error/);
  expect(installed.code).toBe(0);
  bin = path.join(prefix, 'bin', 'wmss');
  pkgDir = path.join(prefix, 'lib', 'node_modules', 'wmss-flow');
  expect(existsSync(bin)).toBe(true);
}, 300_000);

afterAll(async () => {
  await h?.stop();
  // the installed package with its dependencies is about 0.5 GB
  if (h) for (const d of ['prefix', 'pack']) rmSync(path.join(h.dir, d), { recursive: true, force: true });
});

test('--help, a typo, and `plan` of the CPU example', async () => {
  const help = await wmss('--help');
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/^Usage: wmss /);
  expect(help.stdout).toContain('watch [options] <run>');

  const typo = await wmss('statsu');
  expect(typo.code).not.toBe(0);
  expect(typo.stderr).toMatch(/unknown command 'statsu'[\s\S]*Did you mean status\?/);

  const plan = await run(bin, ['plan', path.join(pkgDir, 'examples', 'cpu-small.json')], { cwd: h.dir });
  expect(plan.code).toBe(0);
  expect(plan.stdout).toContain(`run cpu-small in ${path.join(h.dir, 'runs', 'cpu-small')}`);
  expect(plan.stdout).toMatch(/^7 +evaluate on math benchmarks/m);
});

test('workers are quiet by default (no bundler report, no expected warnings), chatty with --verbose; --gpus checks the host', async () => {
  const quiet = await runUntil(
    ['worker', 'control', '--control-queue', 'it-quiet'],
    /wmss control worker .* serving it-quiet/,
  );
  const printed = (quiet.stdout + quiet.stderr).trim().split('\n');
  expect(printed[0]).toMatch(/^wmss control worker @ \S+ serving it-quiet, it-quiet@\S+ at /);
  expect(quiet.stdout + quiet.stderr).not.toMatch(/webpack|modules by path|No workflows registered/);

  const verbose = await runUntil(
    ['worker', 'control', '--control-queue', 'it-verbose', '--verbose'],
    /wmss control worker .* serving it-verbose/,
  );
  expect(verbose.stderr).toMatch(/\[INFO\] Workflow bundle created/);

  const { countHostGpus } = await import('../../workers/hostChecks');
  if (countHostGpus() === undefined) {
    const gpu = await wmss('worker', 'gpu', '--gpus', '0');
    expect(gpu.code).not.toBe(0);
    expect(gpu.stderr).toMatch(/--gpus 0: this host has no NVIDIA GPU/);
    expect(gpu.stdout).not.toMatch(/cuda:0/);
  }
});

describe('against a real dev server', () => {
  const stuck = 'it-stuck';
  const stuckId = `wmss-${stuck}`;
  let runDir: string;

  test('start; status shows the GPU steps waiting for a worker', async () => {
    runDir = path.join(h.dir, 'runs', 'shared');
    // GPU steps go to a queue nobody polls: the run stays open, holding its run dir's lock.
    const config = tinyRunConfig(h.assets, runDir, stuck, { placement: { gpuQueue: 'nobody-polls-this' } });
    writeFileSync(path.join(h.dir, 'stuck.json'), JSON.stringify(config, null, 2));
    const started = await wmss('start', 'stuck.json');
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    const port = Number(h.server.address.split(':')[1]);
    expect(started.stdout).toContain(
      `started ${stuckId}\nWeb UI: http://127.0.0.1:${port + 1000}/namespaces/default/workflows/${stuckId}`,
    );

    const status = await until('step 0 to wait for a worker', async () => {
      const s = await wmss('status', stuck);
      return /\n0 .*running.*waiting for a worker/.test(s.stdout) && s;
    });
    expect(status.code).toBe(0);
  });

  test('`watch … | head -1` ends quietly when head closes the pipe', async () => {
    const piped = await run(
      'bash',
      ['-c', `"${bin}" watch ${stuck} --plain --every 0.5 | head -1; echo "wmss exit \${PIPESTATUS[0]}" >&2`],
      { timeoutMs: 60_000 },
    );
    expect(piped.stdout).toBe(`watching ${stuckId} (run ${stuck}, dir ${runDir})\n`);
    expect(piped.stderr).not.toMatch(/EPIPE|Error|    at /);
    expect(piped.stderr).toMatch(/wmss exit 0/);
  });

  test('a run that fails before any step (its run dir is locked): status, watch and result say why, non-zero', async () => {
    const config = tinyRunConfig(h.assets, runDir, 'it-locked');
    writeFileSync(path.join(h.dir, 'locked.json'), JSON.stringify(config));
    expect((await wmss('start', 'locked.json')).code).toBe(0);
    expect(await closed('wmss-it-locked')).toBe('FAILED');

    const status = await wmss('status', 'it-locked');
    expect(status.code).toBe(1);
    expect(status.stdout).toMatch(/failed: RunDirLocked: .*wmss-it-stuck/);
    expect(status.stdout).toMatch(/\n0 +entropy of the base model +not run\n/);
    expect(status.stdout).not.toMatch(/pending/);

    const watch = await wmss('watch', 'it-locked', '--plain');
    expect(watch.code).toBe(1);
    expect(watch.stdout).toMatch(/failed: RunDirLocked: /);

    const result = await wmss('result', 'it-locked');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/run wmss-it-locked failed: RunDirLocked: /);
    expect(result.stderr).not.toMatch(/^wmss: Workflow execution failed$/m);

    const cancel = await wmss('cancel', 'it-locked');
    expect(cancel.code).not.toBe(0);
    expect(cancel.stderr).toMatch(/wmss-it-locked has already ended \(failed\); nothing to cancel/);
  });

  test('a workflow started with `null` as its input: status and watch say so instead of crashing', async () => {
    execFileSync(temporalCli(), [
      'workflow',
      'start',
      '--type',
      'wmssPipeline',
      '--task-queue',
      'wmss',
      '--workflow-id',
      'it-null-input',
      '--input',
      'null',
      '--address',
      h.server.address,
    ]);
    expect(await closed('it-null-input')).toBe('FAILED');
    for (const args of [
      ['status', 'it-null-input'],
      ['watch', 'it-null-input', '--plain'],
    ]) {
      const r = await wmss(...args);
      expect(r.stderr).not.toMatch(/Cannot read properties/);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain("the workflow's input is not a run config (null)");
      expect(r.stdout).toMatch(/failed: InvalidConfig: /);
    }
  });

  test('cancel of the running run works; cancelling it again is refused', async () => {
    const first = await wmss('cancel', stuck);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`cancellation requested for ${stuckId}`);
    expect(await closed(stuckId)).toBe('CANCELLED');
    const again = await wmss('cancel', stuck);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/has already ended \(cancelled\); nothing to cancel/);
  });
});
