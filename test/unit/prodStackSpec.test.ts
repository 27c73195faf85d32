/**
 * docker-compose.yml as the one source of truth of the production stack (scripts/prodStackSpec.ts):
 * what scripts/prod-stack.sh starts without containers is what compose starts, and both agree
 * with the code (search attributes, CLI, namespace).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { interpolate, readProdStackSpec, toShell } from '../../scripts/prodStackSpec';
import { SEARCH_ATTRIBUTES } from '../../pipeline/searchAttributes';
import { devServerArgs } from '../../client/devServer';

const ROOT = path.join(__dirname, '../..');
const read = (rel: string) => readFileSync(path.join(ROOT, rel), 'utf8');
const compose = parse(read('docker-compose.yml'), { merge: true }).services as Record<string, Record<string, any>>;
const spec = readProdStackSpec(ROOT, {});

/** A copy of the files the reader looks at, with docker-compose.yml edited by `edit`. */
function withCompose(edit: (text: string) => string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-compose-'));
  for (const f of ['Dockerfile', 'deploy']) cpSync(path.join(ROOT, f), path.join(dir, f), { recursive: true });
  writeFileSync(path.join(dir, 'docker-compose.yml'), edit(read('docker-compose.yml')));
  return dir;
}

describe('versions', () => {
  test('the server and both admin-tools jobs run one Temporal version; PostgreSQL is pinned', () => {
    expect(compose.temporal.image).toBe(`temporalio/server:${spec.temporalVersion}`);
    expect(compose['temporal-schema'].image).toBe(`temporalio/admin-tools:${spec.temporalVersion}`);
    expect(compose['temporal-namespace'].image).toBe(`temporalio/admin-tools:${spec.temporalVersion}`);
    expect(compose.postgresql.image).toBe(`postgres:${spec.postgresVersion}`);
    expect(spec.postgresVersion.startsWith(`${spec.postgresMajor}.`)).toBe(true);
  });

  test('a schema job at another version than the server is refused', () => {
    const dir = withCompose((t) =>
      t.replace(/(temporal-namespace:\n\s+image: temporalio\/admin-tools:)[\w.]+/, '$11.29.1'),
    );
    expect(() => readProdStackSpec(dir, {})).toThrow(/temporal-namespace runs admin-tools 1.29.1 but the server is/);
  });
});

describe('databases, namespace, search attributes', () => {
  test('the schema job creates the databases the server uses, under the names compose gives both', () => {
    expect(spec.databases).toEqual({ history: 'temporal', visibility: 'temporal_visibility' });
    for (const env of [spec.schemaJob.env, spec.serverEnv]) {
      expect(env).toMatchObject({
        DB: 'postgres12',
        DBNAME: spec.databases.history,
        VISIBILITY_DBNAME: spec.databases.visibility,
        POSTGRES_USER: spec.postgres.user,
      });
    }
    // the job takes them from its environment, not from literals of its own
    const job = read('deploy/temporal/setup-postgres.sh');
    expect(job).not.toMatch(/temporal_visibility|--ep postgresql|-p 5432/);
    for (const v of ['$DBNAME', '$VISIBILITY_DBNAME', '$POSTGRES_SEEDS', '$DB_PORT', '$POSTGRES_PWD'])
      expect(job).toContain(v);
  });

  test('the search attributes compose registers are the ones the workflow sets and `wmss server` registers', () => {
    expect(spec.searchAttributes.map((a) => a.name)).toEqual(SEARCH_ATTRIBUTES.map((k) => k.name));
    expect(spec.searchAttributes.map((a) => a.type.toUpperCase())).toEqual(SEARCH_ATTRIBUTES.map((k) => k.type));
    const dev = devServerArgs({ dbFile: 'x.db', port: 1, logFile: 'x.log' });
    const registered = dev.filter((_, i) => dev[i - 1] === '--search-attribute');
    expect(registered).toEqual(spec.searchAttributes.map((a) => `${a.name}=${a.type}`));
    expect(read('deploy/temporal/create-namespace.sh')).not.toMatch(/Wmss[A-Z]/);
  });

  test('every worker uses the namespace the namespace job creates; another one is refused', () => {
    expect(spec.namespace).toBe('default');
    for (const w of Object.values(spec.workers)) expect(w.env.TEMPORAL_NAMESPACE).toBe(spec.namespace);
    const dir = withCompose((t) => t.replace('TEMPORAL_NAMESPACE: *wmss-namespace', 'TEMPORAL_NAMESPACE: other'));
    expect(() => readProdStackSpec(dir, {})).toThrow(
      /wmss-control uses namespace other, the namespace job creates default/,
    );
  });
});

describe('jobs, server and workers', () => {
  test('the jobs are the repo files compose mounts; the dynamic config is the mounted file', () => {
    expect(spec.schemaJob.script).toBe(path.join(ROOT, 'deploy/temporal/setup-postgres.sh'));
    expect(spec.namespaceJob.script).toBe(path.join(ROOT, 'deploy/temporal/create-namespace.sh'));
    expect(spec.serverEnv.DYNAMIC_CONFIG_FILE_PATH).toBe(path.join(ROOT, 'deploy/temporal/dynamicconfig/wmss.yaml'));
    expect(read('deploy/temporal/dynamicconfig/wmss.yaml')).toMatch(/^limit\.maxIDLength:/m);
  });

  test("worker commands: the image entrypoint plus compose's command, with compose's interpolation", () => {
    expect(Object.keys(spec.workers).sort()).toEqual(['wmss-control', 'wmss-gpu']);
    expect(spec.workers['wmss-control'].argv).toEqual([
      'node',
      'dist/client/cli.js',
      'worker',
      'control',
      '--metrics-port',
      '9464',
    ]);
    expect(spec.workers['wmss-gpu'].argv).toEqual([
      'node',
      'dist/client/cli.js',
      'worker',
      'gpu',
      '--gpus',
      '0',
      '--metrics-port',
      '9465',
    ]);
    expect(readProdStackSpec(ROOT, { WMSS_GPUS: 'cpu' }).workers['wmss-gpu'].argv.slice(4, 6)).toEqual([
      '--gpus',
      'cpu',
    ]);
    expect(spec.workers['wmss-control'].health).toEqual(['node', 'dist/client/cli.js', 'status', '--limit', '1']);
  });

  test('interpolation as compose does it; other forms are refused by name', () => {
    expect(interpolate('${A:-x}/${B-y}/${C}', { A: '', B: '' }, 'w')).toBe('x//');
    expect(interpolate('${A:-x}', { A: 'a' }, 'w')).toBe('a');
    expect(() => interpolate('${A:?must}', {}, 'docker-compose.yml services.s.environment.K')).toThrow(
      /services\.s\.environment\.K: \$\{A:\?must\} is not an interpolation/,
    );
    expect(readProdStackSpec(ROOT, { POSTGRES_PASSWORD: 's3cret' }).serverEnv.POSTGRES_PWD).toBe('s3cret');
  });
});

describe('scripts/prod-stack.sh reads the spec', () => {
  test('the shell form evaluates in bash to the same values, quotes included', () => {
    const tricky = readProdStackSpec(ROOT, { POSTGRES_PASSWORD: `it's a "pw" $HOME` });
    const out = execFileSync(
      'bash',
      [
        '-c',
        `eval "$1"; printf '%s\\n' "$TEMPORAL_VERSION" "$POSTGRES_PASSWORD" "$NAMESPACE" "\${SERVER_ENV[@]}"`,
        'x',
        toShell(tricky),
      ],
      { encoding: 'utf8' },
    );
    const lines = out.trimEnd().split('\n');
    expect(lines.slice(0, 3)).toEqual([tricky.temporalVersion, `it's a "pw" $HOME`, tricky.namespace]);
    expect(lines.slice(3)).toEqual(Object.entries(tricky.serverEnv).map(([k, v]) => `${k}=${v}`));
  });

  test('the scripts hold no version, database or namespace of their own', () => {
    for (const f of ['scripts/prod-stack.sh', 'scripts/setup-prod-stack.sh']) {
      const text = read(f);
      expect(text).toMatch(/dist\/scripts\/prodStackSpec\.js"? shell/);
      expect(text).not.toMatch(/\b1\.\d+\.\d+\b|postgresql-1\d|temporal_visibility|WMSS_SEARCH/);
    }
  });
});
