/** Pure parts of what users see: date templates, ETA estimates, chart helpers, the compose stack. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { RunConfig } from '../../pipeline/config';
import { resolveRunTemplates } from '../../pipeline/runTemplates';
import { STEPS } from '../../pipeline/steps';
import type { StepStatus } from '../../pipeline/workflowApi';
import { formatDuration, pipelineEta, progressRate, stepRemainingMs } from '../../client/commands/eta';
import { groupedBars, histogram, histogramChart, lineChart, ticks } from '../../client/report/svg';
import { buildProgram } from '../../client/cli';

const ROOT = path.join(__dirname, '../..');
const config = RunConfig.parse({
  runName: 'r',
  runDir: '/data/wmss/r',
  baseModel: '/m/base',
  dataFile: '/data/am/{date}.jsonl',
});

describe('run templates', () => {
  const time = new Date('2026-11-25T03:04:05.678Z');
  test('a scheduled run gets its own run dir and the data file of its day', () => {
    const c = resolveRunTemplates(config, { time, workflowId: 'wmss-r-2026-11-25T03:04:05Z', scheduled: true });
    expect(c.runDir).toBe('/data/wmss/r/2026-11-25T030405Z');
    expect(c.dataFile).toBe('/data/am/2026-11-25.jsonl');
    expect(c.baseModel).toBe('/m/base');
  });
  test('a hand-started run keeps its run dir; tokens in runDir are used as given', () => {
    expect(resolveRunTemplates(config, { time, workflowId: 'x', scheduled: false }).runDir).toBe('/data/wmss/r');
    const daily = resolveRunTemplates(
      { ...config, runDir: '/runs/{date}/{workflowId}' },
      { time, workflowId: 'w', scheduled: true },
    );
    expect(daily.runDir).toBe('/runs/2026-11-25/w');
  });
});

describe('ETA', () => {
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  const at = (s: number) => new Date(t0 + s * 1000).toISOString();
  const steps = (over: Partial<Record<string, Partial<StepStatus>>>): StepStatus[] =>
    STEPS.filter((r) => !r.when).map((r) => ({
      id: r.id,
      number: r.number,
      title: r.title,
      state: 'pending',
      ...over[r.id],
    }));

  test('a running step: rate from samples, remaining from the last heartbeat', () => {
    const p = { done: 30, total: 100, unit: 'steps', updatedAt: at(60) };
    const rate = progressRate(p, [
      { done: 10, at: t0 + 20_000 },
      { done: 30, at: t0 + 60_000 },
    ]);
    expect(rate).toBeCloseTo(0.5 / 1000);
    expect(stepRemainingMs(p, rate, t0 + 70_000)).toBeCloseTo(130_000);
    expect(progressRate(p, [], at(0))).toBeCloseTo(0.5 / 1000);
  });

  test('the pipeline ETA follows the longest path and estimates later steps from earlier ones', () => {
    const s = steps({
      entropy0: { state: 'completed', startedAt: at(0), finishedAt: at(100) },
      snapshot: { state: 'completed', startedAt: at(0), finishedAt: at(10) },
      sft: { state: 'running', startedAt: at(0) },
    });
    // sft: 200 s left (so 400 s in all); entropy1 ≈ entropy0 = 100; merge ≈ snapshot 10; joint ≈ 2 × sft = 800;
    // extract ≈ 10; evaluate unknown → lower bound.
    const eta = pipelineEta(s, { sft: 200_000 }, t0 + 200_000)!;
    expect(eta.remainingMs).toBe((200 + 100 + 10 + 800 + 10) * 1000);
    expect(eta.lowerBound).toBe(true);
    expect(
      pipelineEta(steps(Object.fromEntries(STEPS.map((r) => [r.id, { state: 'completed' }]))), {}, t0),
    ).toBeUndefined();
  });

  test('durations read well', () => {
    expect([
      formatDuration(5_000),
      formatDuration(125_000),
      formatDuration(3 * 3600_000 + 60_000),
      formatDuration(undefined),
    ]).toEqual(['5s', '2m05s', '3h01m', '?']);
  });
});

describe('charts', () => {
  test('a line chart has one polyline point per value', () => {
    const svg = lineChart(
      'loss',
      [{ name: 'a', points: [1, 2, 3, 4, 5].map((x) => ({ x, y: 10 / x })) }],
      'step',
      'loss',
    );
    expect(/points="([^"]+)"/.exec(svg)![1].split(' ')).toHaveLength(5);
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="\d+" height="\d+"/);
    expect(lineChart('loss', [], 'x', 'y')).toContain('data-empty="true"');
  });
  test('a histogram counts every finite value once', () => {
    const values = Array.from({ length: 1000 }, (_, i) => Math.sin(i));
    const h = histogram([...values, NaN], 20);
    expect(h.counts.reduce((a, b) => a + b, 0)).toBe(1000);
    expect(histogramChart('h', h, 'x')).toContain('data-n="1000"');
    expect(ticks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
  });
  test('grouped bars draw one bar per known value', () => {
    const svg = groupedBars(
      'acc',
      ['gsm8k', 'math'],
      [
        { name: 'base', values: [0.5, undefined] },
        { name: 'wmss', values: [0.6, 0.7] },
      ],
      '%',
    );
    expect(svg.match(/class="bar"/g)).toHaveLength(3);
  });
});

describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'));
  const services = compose.services as Record<string, Record<string, any>>;
  // Anchors (<<:) are resolved by the YAML parser with merge keys on.
  const merged = parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }).services as Record<
    string,
    Record<string, any>
  >;

  test('docker compose accepts it, when the client is here', () => {
    let version = '';
    try {
      version = execFileSync('docker', ['compose', 'version'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    } catch {
      return; // no compose plugin on this machine: the structural checks below stand in
    }
    expect(version).toMatch(/Docker Compose/);
    execFileSync('docker', ['compose', '-f', path.join(ROOT, 'docker-compose.yml'), 'config', '--quiet'], {
      stdio: 'pipe',
    });
  });

  test('the stack: database, schema, server, namespace, UI, control and GPU workers, monitoring, in order', () => {
    expect(Object.keys(services).sort()).toEqual([
      'grafana',
      'postgresql',
      'prometheus',
      'temporal',
      'temporal-namespace',
      'temporal-schema',
      'temporal-ui',
      'wmss-control',
      'wmss-gpu',
    ]);
    for (const [name, s] of Object.entries(merged)) {
      if (s.image) expect(`${name}: ${s.image}`).toMatch(/:v?[0-9][\w.-]*$/); // pinned, never :latest
    }
    const dep = (svc: string) => merged[svc].depends_on as Record<string, { condition: string }>;
    expect(dep('temporal-schema').postgresql.condition).toBe('service_healthy');
    expect(dep('temporal')['temporal-schema'].condition).toBe('service_completed_successfully');
    expect(dep('temporal-namespace').temporal.condition).toBe('service_healthy');
    expect(dep('temporal-ui').temporal.condition).toBe('service_healthy');
    for (const w of ['wmss-control', 'wmss-gpu']) {
      expect(dep(w)['temporal-namespace'].condition).toBe('service_completed_successfully');
      expect(merged[w].environment.TEMPORAL_ADDRESS).toBe('temporal:7233');
      expect(merged[w].volumes.some((v: string) => v.endsWith(':/data/wmss'))).toBe(true);
      expect(merged[w].healthcheck.test.length).toBeGreaterThan(1);
    }
    for (const s of ['postgresql', 'temporal']) expect(merged[s].healthcheck).toBeDefined();
    expect(merged.temporal.ports).toContain('7233:7233');
    expect(merged['temporal-ui'].ports).toContain('8080:8080');
    expect(merged['wmss-gpu'].deploy.resources.reservations.devices[0]).toMatchObject({
      driver: 'nvidia',
      capabilities: ['gpu'],
    });
    // The namespace job registers the search attributes the workflow sets (named in compose; test/unit/prodStackSpec.test.ts compares them with the code).
    expect(readFileSync(path.join(ROOT, 'deploy/temporal/create-namespace.sh'), 'utf8')).toContain(
      'WMSS_SEARCH_ATTRIBUTES',
    );
    for (const a of ['WmssRunName', 'WmssStep', 'WmssStatus', 'WmssBaseModel'])
      expect(merged['temporal-namespace'].environment.WMSS_SEARCH_ATTRIBUTES).toContain(`${a}=Keyword`);
    for (const mount of [...merged['temporal-schema'].volumes, ...merged.temporal.volumes])
      expect(
        readFileSync(
          path.join(
            ROOT,
            mount.split(':')[0],
            ...(mount.includes('dynamicconfig') ? ['wmss.yaml'] : ['setup-postgres.sh']),
          ),
          'utf8',
        ).length,
      ).toBeGreaterThan(0);
  });

  test('the worker commands are commands and flags of the wmss CLI', () => {
    const program = buildProgram();
    const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toContain('ENTRYPOINT ["node", "dist/client/cli.js"]');
    expect(dockerfile).toMatch(/pip install .*-r kernels\/requirements.txt/);
    for (const w of ['wmss-control', 'wmss-gpu']) {
      const [name, ...args] = merged[w].command as string[];
      const cmd = program.commands.find((c) => c.name() === name);
      expect(cmd).toBeDefined();
      expect(['control', 'gpu']).toContain(args[0]);
      for (const flag of args.filter((a) => a.startsWith('--')))
        expect(cmd!.options.map((o) => o.long)).toContain(flag);
    }
    const health = merged['wmss-control'].healthcheck.test as string[];
    expect(program.commands.map((c) => c.name())).toContain(health[3]);
  });
});
