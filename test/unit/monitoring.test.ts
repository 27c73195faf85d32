/**
 * The compose stack's monitoring (docker-compose.yml, deploy/prometheus, deploy/grafana), checked
 * by parsing: Prometheus scrapes the ports the worker commands serve metrics on, Grafana is
 * provisioned with the data source and the dashboard the repo holds, and every query of the
 * dashboard names a series that exists (ours from activities/stepMetrics.ts, or the SDK's).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { parseMetricsPort } from '../../workers/telemetry';

const ROOT = path.join(__dirname, '..', '..');
const read = (rel: string) => readFileSync(path.join(ROOT, rel), 'utf8');
const services = parse(read('docker-compose.yml'), { merge: true }).services as Record<string, Record<string, any>>;
const dashboard = JSON.parse(read('deploy/grafana/dashboards/wmss-runs.json'));
/** The series the steps record: every literal name handed to the meter. */
const ours = [...read('activities/stepMetrics.ts').matchAll(/create\w+\(\s*'(wmss_\w+)'/g)].map((m) => m[1]);

/** host path of a service's `./repo/path:/container/path` bind mount of `container`. */
function mountOf(service: string, container: string): string {
  const volume = (services[service].volumes as string[]).find((v) => v.split(':')[1] === container);
  expect(volume).toBeDefined();
  return volume!.split(':')[0];
}

test('every worker serves metrics on its own port and Prometheus scrapes exactly those', () => {
  const workers = Object.keys(services).filter((name) => name.startsWith('wmss-'));
  const expected = workers.map((name) => {
    const command = services[name].command as string[];
    const i = command.indexOf('--metrics-port');
    expect(i).toBeGreaterThan(0);
    return `${name}:${parseMetricsPort(command[i + 1])}`;
  });
  expect(new Set(expected.map((t) => t.split(':')[1])).size).toBe(workers.length);
  const config = parse(read(mountOf('prometheus', '/etc/prometheus/prometheus.yml')));
  const targets = config.scrape_configs.flatMap((c: any) => c.static_configs.flatMap((s: any) => s.targets));
  expect(targets.sort()).toEqual(expected.sort());
});

test('Grafana is provisioned with the Prometheus data source and the dashboard of the repo', () => {
  const provisioning = mountOf('grafana', '/etc/grafana/provisioning');
  const dashboards = mountOf('grafana', '/var/lib/grafana/dashboards');
  const datasource = parse(read(path.join(provisioning, 'datasources', 'prometheus.yml'))).datasources[0];
  expect(datasource).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090', uid: 'wmss-prometheus' });
  const provider = parse(read(path.join(provisioning, 'dashboards', 'wmss.yml'))).providers[0];
  expect(provider.options.path).toBe('/var/lib/grafana/dashboards');
  expect(existsSync(path.join(ROOT, dashboards, 'wmss-runs.json'))).toBe(true);
  for (const panel of dashboard.panels) expect(panel.datasource.uid).toBe(datasource.uid);
});

test('the dashboard shows runs, steps and GPU use, from series that exist', () => {
  expect(ours.length).toBeGreaterThanOrEqual(8);
  const titles = dashboard.panels.map((p: { title: string }) => p.title).join(' | ');
  for (const word of [
    /Runs/,
    /Steps running/,
    /GPU memory/,
    /Training loss/,
    /tokens\/s/,
    /Queue wait/,
    /failure type/,
  ])
    expect(titles).toMatch(word);
  const exprs: string[] = dashboard.panels.flatMap((p: { targets: { expr: string }[] }) =>
    p.targets.map((t) => t.expr),
  );
  const named = exprs.flatMap((e) => [...e.matchAll(/\b((?:wmss|temporal)_\w+)/g)].map((m) => m[1]));
  expect(named.length).toBeGreaterThan(10);
  for (const name of named.filter((n) => n.startsWith('wmss_')))
    expect(ours).toContain(name.replace(/_(sum|count|bucket|total)$/, ''));
  // the run filter is a label every series of ours carries
  expect(dashboard.templating.list[0].name).toBe('run_id');
  for (const e of exprs.filter((x) => x.includes('wmss_'))) expect(e).toContain('run_id=~"$run_id"');
});
