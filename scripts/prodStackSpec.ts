/**
 * The production stack as docker-compose.yml defines it: versions, database names, namespace,
 * search attributes, the set-up jobs and the worker commands. docker-compose.yml is the one source
 * of truth; scripts/prod-stack.sh (the same stack without containers) reads it through this module:
 *   node dist/scripts/prodStackSpec.js shell     # bash assignments, for eval
 *   node dist/scripts/prodStackSpec.js json
 * Environment values are interpolated as compose does (`${VAR:-default}` from this process's
 * environment), so POSTGRES_PASSWORD means the same thing to both.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { REPO_ROOT } from '../activities/repoPaths';

/** Working directory of the temporalio/server image: a relative DYNAMIC_CONFIG_FILE_PATH starts here. */
export const SERVER_IMAGE_WORKDIR = '/etc/temporal';

const EnvMap = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String));
const Service = z.object({
  image: z.string().optional(),
  environment: EnvMap.default({}),
  volumes: z.array(z.string()).default([]),
  command: z.array(z.string()).optional(),
  healthcheck: z.object({ test: z.array(z.string()) }).optional(),
});
const Compose = z.object({ services: z.record(z.string(), Service) });
type Service = z.infer<typeof Service>;

export const ProdStackSpec = z.object({
  temporalVersion: z.string().regex(/^\d+\.\d+\.\d+$/),
  postgresVersion: z.string().regex(/^\d+(\.\d+)?$/),
  postgresMajor: z.string().regex(/^\d+$/),
  postgres: z.object({ user: z.string().min(1), password: z.string() }),
  databases: z.object({ history: z.string().min(1), visibility: z.string().min(1) }),
  namespace: z.string().min(1),
  searchAttributes: z.array(z.object({ name: z.string().regex(/^\w+$/), type: z.string().regex(/^\w+$/) })).min(1),
  /** The set-up jobs and the server: the host file each job runs, and the environment compose gives it. */
  schemaJob: z.object({ script: z.string(), env: z.record(z.string(), z.string()) }),
  serverEnv: z.record(z.string(), z.string()),
  namespaceJob: z.object({ script: z.string(), env: z.record(z.string(), z.string()) }),
  /** Each worker service: the image's ENTRYPOINT (Dockerfile) followed by its compose command, its environment, its health check's argv. */
  workers: z.record(
    z.string(),
    z.object({
      argv: z.array(z.string()).min(2),
      env: z.record(z.string(), z.string()),
      health: z.array(z.string()).min(1),
    }),
  ),
});
export type ProdStackSpec = z.infer<typeof ProdStackSpec>;

/** Compose's interpolation of `${VAR}`, `${VAR:-default}` and `${VAR-default}`; anything else is refused. */
export function interpolate(value: string, env: NodeJS.ProcessEnv, where: string): string {
  return value.replace(/\$\{([^}]*)\}/g, (whole, body: string) => {
    const m = /^(\w+)(?:(:?-)(.*))?$/.exec(body);
    if (!m)
      throw new Error(
        `${where}: ${whole} is not an interpolation this reader supports (\${VAR}, \${VAR:-default}, \${VAR-default})`,
      );
    const [, name, op, fallback = ''] = m;
    const set = env[name];
    if (op === ':-') return set ? set : fallback;
    if (op === '-') return set ?? fallback;
    return set ?? '';
  });
}

function imageTag(services: Record<string, Service>, service: string, repo: string): string {
  const image = services[service]?.image ?? '';
  const [name, tag] = image.split(':');
  if (name !== repo || !tag)
    throw new Error(`docker-compose.yml: services.${service}.image must be ${repo}:<version>, not "${image}"`);
  return tag;
}

/** The host path a service sees at `containerPath`, through its `./host:/container` bind mounts. */
export function hostPathOf(root: string, service: Service, serviceName: string, containerPath: string): string {
  for (const volume of service.volumes) {
    const [host, inside] = volume.split(':');
    if (!host.startsWith('.')) continue; // named volumes hold no repo files
    if (containerPath === inside || containerPath.startsWith(`${inside}/`))
      return path.join(root, host, path.relative(inside, containerPath));
  }
  throw new Error(`docker-compose.yml: services.${serviceName} mounts nothing from the repo at ${containerPath}`);
}

function dockerEntrypoint(root: string): string[] {
  const m = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(readFileSync(path.join(root, 'Dockerfile'), 'utf8'));
  if (!m) throw new Error('Dockerfile: no ENTRYPOINT ["…"] line');
  return JSON.parse(m[1]) as string[];
}

function required(env: Record<string, string>, key: string, where: string): string {
  const v = env[key];
  if (v === undefined || v === '')
    throw new Error(`docker-compose.yml: services.${where}.environment.${key} is not set`);
  return v;
}

export function readProdStackSpec(root = REPO_ROOT, env: NodeJS.ProcessEnv = process.env): ProdStackSpec {
  const file = path.join(root, 'docker-compose.yml');
  const compose = Compose.parse(parse(readFileSync(file, 'utf8'), { merge: true }));
  const services = compose.services;
  const envOf = (name: string): Record<string, string> => {
    const svc = services[name];
    if (!svc) throw new Error(`docker-compose.yml: no service ${name}`);
    return Object.fromEntries(
      Object.entries(svc.environment).map(([k, v]) => [
        k,
        interpolate(v, env, `docker-compose.yml services.${name}.environment.${k}`),
      ]),
    );
  };

  const temporalVersion = imageTag(services, 'temporal', 'temporalio/server');
  for (const job of ['temporal-schema', 'temporal-namespace']) {
    const tag = imageTag(services, job, 'temporalio/admin-tools');
    if (tag !== temporalVersion)
      throw new Error(
        `docker-compose.yml: ${job} runs admin-tools ${tag} but the server is ${temporalVersion}; pin both to one version`,
      );
  }
  const postgresVersion = imageTag(services, 'postgresql', 'postgres');

  const jobScript = (name: string) => {
    const argv = services[name].command ?? [];
    const script = argv[argv.length - 1];
    if (!script) throw new Error(`docker-compose.yml: services.${name}.command names no script`);
    return hostPathOf(root, services[name], name, script);
  };
  const schemaEnv = envOf('temporal-schema');
  const serverEnv = envOf('temporal');
  const dynamicConfig = required(serverEnv, 'DYNAMIC_CONFIG_FILE_PATH', 'temporal');
  // Absolute on the host, so the server reads the file compose mounts, wherever it is started from.
  serverEnv.DYNAMIC_CONFIG_FILE_PATH = hostPathOf(
    root,
    services.temporal,
    'temporal',
    path.posix.resolve(SERVER_IMAGE_WORKDIR, dynamicConfig),
  );
  for (const key of ['DB', 'POSTGRES_USER', 'POSTGRES_PWD', 'DBNAME', 'VISIBILITY_DBNAME'] as const) {
    if (required(schemaEnv, key, 'temporal-schema') !== required(serverEnv, key, 'temporal'))
      throw new Error(`docker-compose.yml: ${key} differs between temporal-schema and temporal`);
  }
  const namespaceEnv = envOf('temporal-namespace');
  const namespace = required(namespaceEnv, 'WMSS_NAMESPACE', 'temporal-namespace');
  const searchAttributes = required(namespaceEnv, 'WMSS_SEARCH_ATTRIBUTES', 'temporal-namespace')
    .split(',')
    .map((pair) => {
      const [name, type] = pair.split('=');
      return { name, type };
    });

  const entrypoint = dockerEntrypoint(root);
  const workers: ProdStackSpec['workers'] = {};
  for (const [name, svc] of Object.entries(services)) {
    if (!name.startsWith('wmss-')) continue;
    const workerEnv = envOf(name);
    if (required(workerEnv, 'TEMPORAL_NAMESPACE', name) !== namespace)
      throw new Error(
        `docker-compose.yml: ${name} uses namespace ${workerEnv.TEMPORAL_NAMESPACE}, the namespace job creates ${namespace}`,
      );
    const command = (svc.command ?? []).map((arg, i) =>
      interpolate(arg, env, `docker-compose.yml services.${name}.command[${i}]`),
    );
    const [kind, ...health] = svc.healthcheck?.test ?? [];
    if (kind !== 'CMD') throw new Error(`docker-compose.yml: services.${name}.healthcheck.test must be ["CMD", …]`);
    workers[name] = { argv: [...entrypoint, ...command], env: workerEnv, health };
  }

  return ProdStackSpec.parse({
    temporalVersion,
    postgresVersion,
    postgresMajor: postgresVersion.split('.')[0],
    postgres: {
      user: required(envOf('postgresql'), 'POSTGRES_USER', 'postgresql'),
      password: required(envOf('postgresql'), 'POSTGRES_PASSWORD', 'postgresql'),
    },
    databases: { history: schemaEnv.DBNAME, visibility: schemaEnv.VISIBILITY_DBNAME },
    namespace,
    searchAttributes,
    schemaJob: { script: jobScript('temporal-schema'), env: schemaEnv },
    serverEnv,
    namespaceJob: { script: jobScript('temporal-namespace'), env: namespaceEnv },
    workers,
  });
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const shellArray = (env: Record<string, string>) =>
  `(${Object.entries(env)
    .map(([k, v]) => shellQuote(`${k}=${v}`))
    .join(' ')})`;

/** Bash assignments (scalars and `KEY=value` arrays for `env`) of what prod-stack.sh needs. */
export function toShell(spec: ProdStackSpec): string {
  return [
    `TEMPORAL_VERSION=${shellQuote(spec.temporalVersion)}`,
    `POSTGRES_VERSION=${shellQuote(spec.postgresVersion)}`,
    `POSTGRES_MAJOR=${shellQuote(spec.postgresMajor)}`,
    `POSTGRES_USER=${shellQuote(spec.postgres.user)}`,
    `POSTGRES_PASSWORD=${shellQuote(spec.postgres.password)}`,
    `HISTORY_DB=${shellQuote(spec.databases.history)}`,
    `VISIBILITY_DB=${shellQuote(spec.databases.visibility)}`,
    `NAMESPACE=${shellQuote(spec.namespace)}`,
    `SCHEMA_JOB=${shellQuote(spec.schemaJob.script)}`,
    `SCHEMA_ENV=${shellArray(spec.schemaJob.env)}`,
    `SERVER_ENV=${shellArray(spec.serverEnv)}`,
    `NAMESPACE_JOB=${shellQuote(spec.namespaceJob.script)}`,
    `NAMESPACE_ENV=${shellArray(spec.namespaceJob.env)}`,
  ].join('\n');
}

if (require.main === module) {
  const format = process.argv[2];
  try {
    const spec = readProdStackSpec();
    if (format === 'shell') console.log(toShell(spec));
    else if (format === 'json') console.log(JSON.stringify(spec, null, 2));
    else {
      console.error('usage: node dist/scripts/prodStackSpec.js shell|json');
      process.exit(2);
    }
  } catch (err) {
    console.error(`prodStackSpec: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
