/**
 * What users see, on one real run (dev server with the Web UI, real workers and kernels, tiny
 * model): `wmss watch` while it runs (plain lines and cli-progress bars), `wmss status` after,
 * `wmss report`, the Web UI in headless Chromium, and Temporal Schedules. The run is started with
 * `temporal workflow start` under a workflow id wmss-flow did not choose, so everything here works
 * from the workflow id or the run name alone.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { chromium, type Browser } from 'playwright-core';
import type { RunConfig } from '../../pipeline/config';
import * as A from '../../pipeline/artifacts';
import { activeSteps, stepSummary } from '../../pipeline/steps';
import { progressQuery, type PipelineProgress } from '../../pipeline/workflowApi';
import { buildProgram } from '../../client/cli';
import { temporalCli } from '../../client/devServer';
import { listRuns, resolveWorkflowId } from '../../client/commands/resolveRun';
import { renderSnapshot, snapshotRun } from '../../client/commands/status';
import { watchRun } from '../../client/commands/watch';
import { runOfWorkflow, writeReport } from '../../client/commands/report';
import { createSchedule, describeSchedule } from '../../client/commands/schedule';
import { fillTemplate } from '../../pipeline/runTemplates';
import { freePort, startHarness, tinyRunConfig, type Harness } from '../../testkit/harness';

jest.setTimeout(600_000);

const RUN = 'it-ux';
const WORKFLOW_ID = 'ux-started-by-temporal-cli';
const CHROMIUM = process.env.WMSS_CHROMIUM ?? '/usr/bin/chromium';

let h: Harness;
let config: RunConfig;
let uiUrl: string;

class Capture extends Writable {
  text = '';
  constructor(public isTTY = false) {
    super();
  }
  columns = 200;
  _write(chunk: Buffer, _enc: string, cb: () => void) {
    this.text += chunk.toString();
    cb();
  }
}

/** Runs the real CLI in-process and returns what it printed. */
async function cli(...args: string[]): Promise<string> {
  const lines: string[] = [];
  const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
  try {
    await buildProgram()
      .exitOverride()
      .parseAsync(['node', 'wmss', ...args]);
  } finally {
    log.mockRestore();
  }
  return lines.join('\n');
}

const SFT_STEPS = 120;

beforeAll(async () => {
  h = await startHarness({ uiPort: await freePort() });
  uiUrl = h.server.uiUrl!;
  process.env.TEMPORAL_ADDRESS = h.server.address;
  const base = tinyRunConfig(h.assets, path.join(h.dir, 'run'), RUN);
  // Stage 1 long enough (tens of seconds) that heartbeats with its progress reach `watch`.
  config = { ...base, sft: { ...base.sft, maxSteps: SFT_STEPS, saveEvery: 40 } };
}, 300_000);

afterAll(async () => {
  await h?.stop();
});

test('watch follows a run started by `temporal workflow start` until it ends: plain lines and progress bars', async () => {
  const file = path.join(h.dir, 'run.json');
  writeFileSync(file, JSON.stringify(config));
  execFileSync(temporalCli(), [
    'workflow',
    'start',
    '--type',
    'wmssPipeline',
    '--task-queue',
    'wmss',
    '--workflow-id',
    WORKFLOW_ID,
    '--input-file',
    file,
    '--address',
    h.server.address,
  ]);
  const plain = new Capture(false);
  const bars = new Capture(true);
  const [last] = await Promise.all([
    watchRun(h.client, WORKFLOW_ID, { everyMs: 500, out: plain }),
    watchRun(h.client, WORKFLOW_ID, { everyMs: 700, out: bars, plain: false }),
  ]);
  expect(last.workflowStatus).toBe('COMPLETED');

  // Plain lines: state changes, per-step progress with unit, loss and ETA, and the run's ETA.
  expect(plain.text).toMatch(/step 1 Stage-1 SFT of the base → m1: running/);
  // A training step's progress (SFT or joint; heartbeats are throttled, so a 15 s step may show none).
  expect(plain.text).toMatch(/step (1|5b) \d+\/(6|120) steps \(\d+%\) · loss \d+\.\d{4} · \d+ tok\/s.* · ETA \d+/);
  expect(plain.text).toMatch(/step (0|2|7) \d+\/\d+ samples/);
  expect(plain.text).toMatch(/run it-ux: \d\/9 steps done, ETA (≥ )?\d+/);
  expect(plain.text).toMatch(/step 7 evaluate on math benchmarks: completed in \d+/);
  // cli-progress bars on a terminal: a pipeline bar and step bars with the bar glyphs.
  expect(bars.text).toMatch(/run it-ux\s+\|[█░]+\| \d\/9 steps done/);
  expect(bars.text).toMatch(
    /(Stage-1 SFT of the base → m1|joint training on the resampled data)\s*\|[█░]+\| \d+\/(6|120) steps\s+\d+% · loss /,
  );
  // Both end with the status table, every step completed.
  for (const out of [plain.text, bars.text]) expect(out).toMatch(/7\s+evaluate on math benchmarks\s+completed/);
});

test('status: a compact table from the history, and the run found by its name', async () => {
  expect(await resolveWorkflowId(h.client, RUN)).toBe(WORKFLOW_ID);
  const table = renderSnapshot(await snapshotRun(h.client, WORKFLOW_ID));
  for (const row of activeSteps(config))
    expect(table).toMatch(
      new RegExp(`\\n${row.number}\\s+${row.title.replace(/[+()]/g, '\\$&')}\\s+completed\\s+\\d+`),
    );
  expect((await listRuns(h.client)).map((r) => r.workflowId)).toContain(WORKFLOW_ID);
  const printed = await cli('status', RUN);
  expect(printed).toContain(`run ${RUN} (${WORKFLOW_ID}): completed`);
  expect(await cli('status')).toMatch(new RegExp(`${WORKFLOW_ID}\\s+${RUN}\\s+completed`));
});

test('report: HTML (self-contained) and Markdown with loss curves, histograms, weights, accuracy and published numbers', async () => {
  const run = await runOfWorkflow(h.client, RUN);
  expect(run.runDir).toBe(config.runDir);
  const files = await writeReport(run.runDir, { config: run.config, workflowId: run.workflowId, runName: run.runName });
  expect(files.data.missing).toEqual([]);
  for (const f of [files.html, files.markdown, ...files.charts]) expect(statSync(f).size).toBeGreaterThan(500);

  const svg = (name: string) => readFileSync(path.join(files.dir, name), 'utf8');
  // One polyline point per logged optimizer step, as in trainer_state.json of the final checkpoints.
  for (const [chart, step] of [
    ['loss-stage1.svg', 'sft'],
    ['loss-stage3.svg', 'joint'],
  ] as const) {
    const ckpt = JSON.parse(readFileSync(path.join(config.runDir, A.manifestPath(step)), 'utf8')).result.outputs
      .checkpoint;
    const logged = JSON.parse(readFileSync(path.join(config.runDir, ckpt, 'trainer_state.json'), 'utf8')).loss_history
      .length;
    expect(logged).toBe(step === 'sft' ? SFT_STEPS : 6);
    const points = /<polyline[^>]* points="([^"]+)"/.exec(svg(chart))![1].trim().split(/\s+/);
    expect(points).toHaveLength(logged);
    points.forEach((p) => expect(p).toMatch(/^-?\d+(\.\d+)?,-?\d+(\.\d+)?$/));
  }
  const n = readFileSync(config.dataFile, 'utf8').split('\n').filter(Boolean).length;
  for (const chart of ['entropy-h0.svg', 'entropy-h1.svg', 'entropy-delta.svg', 'sample-weights.svg']) {
    expect(svg(chart)).toContain(`data-n="${n}"`);
    expect((svg(chart).match(/class="bin"/g) ?? []).length).toBeGreaterThan(3);
  }
  // the draw probabilities span orders of magnitude: binned by log10, not piled into one bin
  expect(svg('sample-weights.svg')).toContain('log10 of the weight');
  expect((svg('accuracy.svg').match(/class="bar"/g) ?? []).length).toBe(3); // base, m1, wmss on one eval set
  expect((svg('dag-timings.svg').match(/class="step"/g) ?? []).length).toBe(activeSteps(config).length);

  const html = readFileSync(files.html, 'utf8');
  expect(html).not.toMatch(/<(script|link|img)\b[^>]*(src|href)=/i); // self-contained
  expect((html.match(/<svg /g) ?? []).length).toBe(files.charts.length);
  for (const text of [
    'base model pass@1 %',
    'm1 (Stage-1 SFT) pass@1 %',
    'WMSS (extracted) pass@1 %',
    'arXiv 2602.08222v2',
    'Qwen3-8B-Base',
    '&quot;fusionLambda&quot;: 0.5',
    'effectiveSampleSize',
  ])
    expect(html).toContain(text);
  const md = readFileSync(files.markdown, 'utf8');
  for (const f of files.charts) expect(md).toContain(`](${path.basename(f)})`);
  // per model: pass@1 %, truncated %, mean new tokens; then WMSS − m1
  expect(md).toMatch(/\| arithmetic \| 24 \|( \d+\.\d \| \d+\.\d \| \d+ \|){3} -?\d+\.\d \|/);
  expect(md).toContain("### Beside the paper's Table 1");

  // From the run dir alone (no server): the CLI, config slices from the manifests.
  const printed = await cli('report', config.runDir);
  expect(printed).toContain(path.join(config.runDir, 'report', 'index.html'));
  expect(readFileSync(files.html, 'utf8')).toContain('Config slices recorded in the step manifests');
});

test('Web UI (headless Chromium): the run is found by its search attributes and its timeline shows every step', async () => {
  expect(existsSync(CHROMIUM)).toBe(true);
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    const query = `WmssRunName="${RUN}" AND WmssStatus="completed" AND WmssBaseModel="${config.baseModel}"`;
    await page.goto(`${uiUrl}/namespaces/default/workflows?query=${encodeURIComponent(query)}`);
    await page.getByText(WORKFLOW_ID).first().waitFor({ timeout: 60_000 });
    const none = `WmssRunName="no-such-run"`;
    const list = await page.innerText('body');
    expect(list).toContain('wmssPipeline');

    await page.goto(`${uiUrl}/namespaces/default/workflows/${WORKFLOW_ID}`);
    const summaries = activeSteps(config).map(stepSummary);
    expect(summaries).toHaveLength(9);
    await page
      .getByText(summaries[summaries.length - 1])
      .first()
      .waitFor({ timeout: 60_000 });
    const body = await page.innerText('body');
    for (const s of summaries) expect(body).toContain(s);
    await page.screenshot({ path: path.join(h.dir, 'web-ui-run.png') });
    if (process.env.WMSS_UPDATE_SCREENSHOT)
      await page.screenshot({ path: path.join(__dirname, '../../docs/web-ui-run.png') });

    await page.getByText('Search Attributes', { exact: true }).first().click();
    await page.getByText('WmssBaseModel').first().waitFor({ timeout: 30_000 });
    const attributes = await page.innerText('body');
    for (const text of ['WmssRunName', RUN, 'WmssStatus', 'WmssBaseModel', config.baseModel])
      expect(attributes).toContain(text);
    await page.screenshot({ path: path.join(h.dir, 'web-ui-search-attributes.png') });

    // A filter that matches nothing lists nothing (the filter is really applied).
    await page.goto(`${uiUrl}/namespaces/default/workflows?query=${encodeURIComponent(none)}`);
    await page.waitForTimeout(3000);
    expect(await page.innerText('body')).not.toContain(WORKFLOW_ID);
  } finally {
    await browser?.close();
  }
});

test('schedules: create, trigger, describe, pause, backfill; a 2 s schedule fires twice; dated run dirs and data paths', async () => {
  // GPU steps go to a queue nobody polls: scheduled runs start and resolve their paths, cheaply.
  const base = tinyRunConfig(h.assets, path.join(h.dir, 'sched'), 'it-sched', {
    placement: { gpuQueue: 'nobody-polls-this' },
  });
  const schedConfig: RunConfig = { ...base, dataFile: path.join(h.dir, 'data', '{date}', 'train.jsonl') };
  const configFile = path.join(h.dir, 'sched.json');
  writeFileSync(configFile, JSON.stringify(schedConfig));

  const created = await cli('schedule', 'create', '--config', configFile, '--every', '1d', '--id', 'it-daily');
  expect(created).toContain('created schedule it-daily');
  expect(created).toMatch(/overlap SKIP, pause on failure true/);
  await cli('schedule', 'trigger', 'it-daily');
  const handle = h.client.schedule.getHandle('it-daily');
  const firstRun = await waitFor(
    async () => (await handle.describe()).info.recentActions[0]?.action.workflow.workflowId,
  );
  expect(firstRun).toMatch(/^wmss-it-sched-\d{4}-\d\d-\d\dT/);

  // The run resolved its own run dir and the dated data path from its scheduled time.
  const d = await h.client.workflow.getHandle(firstRun).describe();
  const scheduledAt = d.typedSearchAttributes.get(
    (await import('../../pipeline/searchAttributes')).TemporalScheduledStartTime,
  )!;
  const ctx = { time: scheduledAt, workflowId: firstRun, scheduled: true };
  const progress: PipelineProgress = await waitFor(() => h.client.workflow.getHandle(firstRun).query(progressQuery));
  expect(progress.runDir).toBe(fillTemplate(path.join(h.dir, 'sched', '{datetime}'), ctx));
  expect(((await h.client.workflow.getHandle(firstRun).describe()).memo?.config as { dataFile: string }).dataFile).toBe(
    path.join(h.dir, 'data', fillTemplate('{date}', ctx), 'train.jsonl'),
  );

  // SKIP: a second trigger while the first run is going starts nothing.
  await cli('schedule', 'trigger', 'it-daily');
  await new Promise((r) => setTimeout(r, 3000));
  expect((await handle.describe()).info.recentActions).toHaveLength(1);
  const described = await cli('schedule', 'describe', 'it-daily');
  expect(described).toContain('schedule it-daily: active');
  expect(described).toContain(firstRun);
  expect(described).toMatch(/policies\s+overlap SKIP, pause on failure true/);
  expect((await h.client.workflow.getHandle(firstRun).describe()).status.name).toBe('RUNNING');

  await cli('schedule', 'pause', 'it-daily');
  expect((await handle.describe()).state.paused).toBe(true);
  await cli('schedule', 'unpause', 'it-daily');
  expect((await handle.describe()).state.paused).toBe(false);
  // Backfill one past day (ALLOW_ALL so it starts beside the running one): its paths carry that day.
  const day = new Date(Date.UTC(2026, 0, 10));
  await cli(
    'schedule',
    'backfill',
    'it-daily',
    '--start',
    new Date(day.getTime() - 1000).toISOString(),
    '--end',
    new Date(day.getTime() + 1000).toISOString(),
    '--overlap',
    'ALLOW_ALL',
  );
  const backfilled = await waitFor(async () =>
    (await handle.describe()).info.recentActions
      .map((a) => a.action.workflow.workflowId)
      .find((id) => id.includes('2026-01-10')),
  );
  const bf: PipelineProgress = await waitFor(() => h.client.workflow.getHandle(backfilled).query(progressQuery));
  expect(bf.runDir).toBe(path.join(h.dir, 'sched', '2026-01-10T000000Z'));

  // A 2 s schedule (ALLOW_ALL, as its runs never end here) fires twice, each run with its own dir.
  const fast = await createSchedule(h.client, {
    config: { ...schedConfig, runName: 'it-fast' },
    scheduleId: 'it-fast',
    every: '2s',
    overlap: 'ALLOW_ALL',
  });
  const fired = await waitFor(async () => {
    const info = (await fast.describe()).info;
    return info.numActionsTaken >= 2 ? info.recentActions.map((a) => a.action.workflow.workflowId) : undefined;
  }, 30_000);
  const dirs = await Promise.all(
    fired
      .slice(0, 2)
      .map((id) => waitFor(() => h.client.workflow.getHandle(id).query(progressQuery)).then((p) => p.runDir)),
  );
  expect(new Set(dirs).size).toBe(2);
  expect(await describeSchedule(fast)).toContain('every 2s');
  expect(await cli('schedule', 'list')).toMatch(/it-daily\s+every 1d\s+active/);

  await cli('schedule', 'delete', 'it-fast');
  await cli('schedule', 'delete', 'it-daily');
  await expect(fast.describe()).rejects.toThrow();
  for await (const wf of h.client.workflow.list({ query: 'ExecutionStatus="Running"' }))
    await h.client.workflow.getHandle(wf.workflowId).terminate('test over');
});

async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== null) return v;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 300));
  }
}
