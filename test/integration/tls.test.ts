/**
 * TLS, mTLS and API keys against a real server. The dev server speaks plain text only, so the test
 * puts Debian's nginx in front of it as a TLS-terminating gRPC proxy (`grpc_pass`), with
 * certificates it makes itself with openssl:
 *
 *   :mtls  TLS with `ssl_verify_client on`: only clients with a certificate of the test CA pass
 *   :key   TLS (server certificate only) and an API key: only `authorization: Bearer <key>` passes
 *
 * A client and a worker configured through temporal/connection.ts (flags, TEMPORAL_* variables, a
 * TOML profile, as Temporal's environment configuration defines them) connect and run a workflow
 * with an activity through the proxy; clients without the right certificate or key, or that do
 * not trust the server, are refused. nginx comes from scripts/setup-nginx.sh (scripts/test.sh runs
 * it); WMSS_NGINX names another binary. The test runs its own nginx process (own config, prefix,
 * pid) and stops it by its pid.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import {
  connectClient,
  connectWorker,
  temporalTarget,
  type ConnectionFlags,
  type TemporalTarget,
} from '../../temporal/connection';
import type { DevServer } from '../../client/devServer';
import { freePort, startDevServerOnFreePort } from '../../testkit/harness';

jest.setTimeout(180_000);

const NGINX = process.env.WMSS_NGINX ?? '/usr/sbin/nginx';
const API_KEY = 'wmss-test-api-key-3f9c2a';

let dir: string;
let server: DevServer;
let nginx: ChildProcess;
let mtlsAddress: string;
let keyAddress: string;
const f = (name: string) => path.join(dir, name);
/** HOME of every target: no ~/.config/temporalio/temporal.toml of the machine leaks in. */
let home: string;

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A P-256 key and a certificate for it signed by `ca` (or self-signed when `ca` is undefined, a CA). */
function certificate(name: string, subject: string, ca: string | undefined, extensions: string[]): void {
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
  if (!ca) {
    openssl(
      'req',
      '-x509',
      '-new',
      '-key',
      `${name}.key`,
      '-subj',
      subject,
      '-days',
      '2',
      '-out',
      `${name}.crt`,
      '-config',
      '/dev/null',
      ...extensions.flatMap((e) => ['-addext', e]),
    );
    return;
  }
  const ext = f(`${name}.ext`);
  writeFileSync(ext, `${[...extensions, 'authorityKeyIdentifier=keyid', 'subjectKeyIdentifier=hash'].join('\n')}\n`);
  openssl('req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`, '-config', '/dev/null');
  openssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.crt`,
    '-CAkey',
    `${ca}.key`,
    '-set_serial',
    `0x${randomBytes(8).toString('hex')}`,
    '-days',
    '2',
    '-out',
    `${name}.crt`,
    '-extfile',
    ext,
  );
}

async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

beforeAll(async () => {
  if (!existsSync(NGINX))
    throw new Error(`${NGINX} is missing: run scripts/setup-nginx.sh (installs Debian's nginx) or set WMSS_NGINX`);
  Runtime.install({ logger: new DefaultLogger('WARN') });
  dir = mkdtempSync(path.join(os.tmpdir(), 'wmss-tls-'));
  home = mkdtempSync(path.join(os.tmpdir(), 'wmss-tls-home-'));

  // the test CA, the proxy's server certificate, a client certificate; and a second, rogue CA with its own client
  const caExt = [
    'basicConstraints=critical,CA:TRUE',
    'keyUsage=critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier=hash',
  ];
  certificate('ca', '/CN=wmss test CA', undefined, caExt);
  certificate('server', '/CN=localhost', 'ca', [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  certificate('client', '/CN=wmss worker', 'ca', [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=clientAuth',
  ]);
  certificate('rogue-ca', '/CN=rogue CA', undefined, caExt);
  certificate('rogue', '/CN=wmss worker', 'rogue-ca', [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=clientAuth',
  ]);

  server = await startDevServerOnFreePort({ dbFile: f('temporal.db'), logFile: f('temporal.log') }).catch(
    (err: unknown) => {
      throw new Error(`${String(err)}\n${readFileSync(f('temporal.log'), 'utf8').slice(-2000)}`);
    },
  );
  const [mtlsPort, keyPort] = [await freePort(), await freePort()];
  mtlsAddress = `127.0.0.1:${mtlsPort}`;
  keyAddress = `127.0.0.1:${keyPort}`;
  const upstream = `grpc_pass grpc://${server.address};\n      grpc_read_timeout 300s;\n      grpc_send_timeout 300s;`;
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `  ${t}_temp_path ${f(`${t}_temp`)};`)
    .join('\n');
  writeFileSync(
    f('nginx.conf'),
    `pid ${f('nginx.pid')};
error_log ${f('nginx-error.log')} info;
events { worker_connections 256; }
http {
${temp}
  client_max_body_size 8m;
  ssl_certificate ${f('server.crt')};
  ssl_certificate_key ${f('server.key')};
  map $http_authorization $wmss_key_ok { default 0; "Bearer ${API_KEY}" 1; }
  server {
    listen ${mtlsAddress} ssl http2;
    access_log ${f('mtls-access.log')};
    ssl_client_certificate ${f('ca.crt')};
    ssl_verify_client on;
    location / {
      ${upstream}
    }
  }
  server {
    listen ${keyAddress} ssl http2;
    access_log ${f('key-access.log')};
    location / {
      if ($wmss_key_ok = 0) { return 401; }
      ${upstream}
    }
  }
}
`,
  );
  nginx = spawn(
    NGINX,
    ['-p', dir, '-c', f('nginx.conf'), '-e', f('nginx-error.log'), '-g', 'daemon off; master_process off;'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  nginx.stderr!.on('data', (d) => (stderr += d));
  const deadline = Date.now() + 20_000;
  while (!((await portOpen(mtlsPort)) && (await portOpen(keyPort)))) {
    if (nginx.exitCode !== null || Date.now() > deadline)
      throw new Error(
        `nginx did not start: ${stderr}${existsSync(f('nginx-error.log')) ? readFileSync(f('nginx-error.log'), 'utf8') : ''}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}, 120_000);

afterAll(async () => {
  if (nginx && nginx.exitCode === null) {
    const gone = new Promise((r) => nginx.once('exit', r));
    nginx.kill('SIGTERM');
    await gone;
  }
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (home) rmSync(home, { recursive: true, force: true });
});

const mtlsFlags = (): ConnectionFlags => ({
  address: mtlsAddress,
  tlsCaPath: f('ca.crt'),
  tlsCertPath: f('client.crt'),
  tlsKeyPath: f('client.key'),
  tlsServerName: 'localhost',
});

/** Connect as a client and ask the server something that needs a working connection. */
async function describeNamespace(target: TemporalTarget): Promise<string> {
  const client = await connectClient(target);
  try {
    const ns = await client.workflowService.describeNamespace({ namespace: target.namespace });
    return ns.namespaceInfo!.name!;
  } finally {
    await client.connection.close();
  }
}

/** The connection is refused, at connect or at the first call, within 30 s; returns the error's message and cause. */
async function refused(connect: () => Promise<unknown>): Promise<string> {
  const t0 = Date.now();
  const err = await connect().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  expect(Date.now() - t0).toBeLessThan(30_000);
  const cause = (err as Error).cause;
  return `${(err as Error).message}${cause ? ` (${cause instanceof Error ? cause.message : JSON.stringify(cause)})` : ''}`;
}

/** Every string and byte string (payload data, metadata) in `value`, the bytes decoded as UTF-8. */
function strings(value: unknown): string[] {
  if (value instanceof Uint8Array) return [Buffer.from(value).toString('utf8')];
  if (typeof value === 'string') return [value];
  return value && typeof value === 'object' ? Object.values(value).flatMap(strings) : [];
}

/**
 * Runs tlsEcho with a worker on `workerConnection` and a client on `client`; returns its result and
 * history as text: its JSON, where payloads are base64, and every payload decoded, so that a secret
 * in a payload shows too.
 */
async function echoThrough(client: Client, workerConnection: NativeConnection, taskQueue: string) {
  const worker = await Worker.create({
    connection: workerConnection,
    taskQueue,
    workflowsPath: require.resolve('./tlsWorkflows'),
    activities: { greet: async (name: string) => `hello ${name}` },
  });
  return worker.runUntil(async () => {
    const handle = await client.workflow.start('tlsEcho', {
      taskQueue,
      workflowId: `tls-${taskQueue}-${Date.now()}`,
      args: ['wmss'],
    });
    const result = await handle.result();
    const history = await handle.fetchHistory();
    return {
      result,
      history: [JSON.stringify(history), ...strings(history)].join('\n'),
      description: await handle.describe(),
    };
  });
}

test('mTLS from flags: a client and a worker with the CA-signed certificate connect and run a workflow with an activity through the proxy', async () => {
  const target = temporalTarget(mtlsFlags(), { HOME: home });
  expect(target.security).toBe('mTLS');
  expect(await describeNamespace(target)).toBe('default');

  const client = await connectClient(target);
  const workerConnection = await connectWorker(target);
  try {
    const { result, history, description } = await echoThrough(client, workerConnection, 'tls-mtls');
    expect(result).toBe('echo: hello wmss');
    expect(description.status.name).toBe('COMPLETED');
    // the key material stays on the machines that read it: nothing of it is in the history
    const keyBody = readFileSync(f('client.key'), 'utf8').split('\n')[1];
    expect(history).not.toContain(keyBody);
    expect(history).not.toContain('PRIVATE KEY');
    // it all went through the proxy: the worker (Rust core, "tonic") polled and completed the
    // workflow task and completed the activity there (the activity may start eagerly, without a poll)
    const access = readFileSync(f('mtls-access.log'), 'utf8');
    for (const call of ['PollWorkflowTaskQueue', 'RespondWorkflowTaskCompleted', 'RespondActivityTaskCompleted']) {
      expect(access).toMatch(new RegExp(`${call} HTTP/2.0" 200 .*tonic`));
    }
  } finally {
    await workerConnection.close();
    await client.connection.close();
  }
});

test('mTLS from TEMPORAL_* variables and from a TOML profile (--config-file, --profile)', async () => {
  const env = {
    HOME: home,
    TEMPORAL_ADDRESS: mtlsAddress,
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: f('ca.crt'),
    TEMPORAL_TLS_CLIENT_CERT_PATH: f('client.crt'),
    TEMPORAL_TLS_CLIENT_KEY_PATH: f('client.key'),
    TEMPORAL_TLS_SERVER_NAME: 'localhost',
  };
  const fromEnv = temporalTarget({}, env);
  expect(fromEnv).toMatchObject({ address: mtlsAddress, security: 'mTLS' });
  expect(await describeNamespace(fromEnv)).toBe('default');

  const toml = f('temporal.toml');
  writeFileSync(
    toml,
    [
      '[profile.cluster]',
      `address = "${mtlsAddress}"`,
      'namespace = "default"',
      '[profile.cluster.tls]',
      `server_ca_cert_path = "${f('ca.crt')}"`,
      `client_cert_path = "${f('client.crt')}"`,
      `client_key_path = "${f('client.key')}"`,
      'server_name = "localhost"',
      '',
    ].join('\n'),
  );
  const fromFile = temporalTarget({ configFile: toml, profile: 'cluster' }, { HOME: home });
  expect(fromFile.security).toBe('mTLS');
  expect(await describeNamespace(fromFile)).toBe('default');
  // a worker from the same profile passes too
  const worker = await connectWorker(fromFile);
  await worker.close();
});

test('mTLS proxy refuses clients and workers without a certificate of its CA, and clients that do not trust it', async () => {
  const noCert = temporalTarget(
    { address: mtlsAddress, tlsCaPath: f('ca.crt'), tlsServerName: 'localhost' },
    { HOME: home },
  );
  expect(noCert.security).toBe('TLS');
  expect(await refused(() => describeNamespace(noCert))).toMatch(/HTTP status code 400/);
  expect(await refused(() => connectWorker(noCert).then((c) => c.close()))).toMatch(/400 Bad Request/);

  const rogue = temporalTarget(
    { ...mtlsFlags(), tlsCertPath: f('rogue.crt'), tlsKeyPath: f('rogue.key') },
    { HOME: home },
  );
  expect(rogue.security).toBe('mTLS');
  expect(await refused(() => describeNamespace(rogue))).toMatch(/HTTP status code 400/);
  expect(await refused(() => connectWorker(rogue).then((c) => c.close()))).toMatch(/400 Bad Request/);
  // refused by the proxy's client-certificate check, for the reason each one deserves
  const log = readFileSync(f('nginx-error.log'), 'utf8');
  expect(log.match(/client sent no required SSL certificate/g)?.length).toBeGreaterThanOrEqual(2); // client and worker
  expect(log.match(/client SSL certificate verify error/g)?.length).toBeGreaterThanOrEqual(2);

  // the client checks the server too: the right client certificate, but a CA that did not sign the proxy's
  const untrusting = temporalTarget({ ...mtlsFlags(), tlsCaPath: f('rogue-ca.crt') }, { HOME: home });
  await refused(() => describeNamespace(untrusting));
  await refused(() => connectWorker(untrusting).then((c) => c.close()));

  // plain text to a TLS port
  await refused(() => Connection.connect({ address: mtlsAddress, connectTimeout: '5s' }).then((c) => c.close()));
});

test('TLS with an API key: the right key connects and runs a workflow, a wrong or missing key is refused, and the key is not in the history', async () => {
  const target = temporalTarget(
    { address: keyAddress, tlsCaPath: f('ca.crt'), tlsServerName: 'localhost' },
    { HOME: home, TEMPORAL_API_KEY: API_KEY },
  );
  expect(target.security).toBe('TLS, API key');
  expect(await describeNamespace(target)).toBe('default');

  const client = await connectClient(target);
  const workerConnection = await connectWorker(target);
  try {
    const { result, history } = await echoThrough(client, workerConnection, 'tls-api-key');
    expect(result).toBe('echo: hello wmss');
    expect(history).not.toContain(API_KEY);
  } finally {
    await workerConnection.close();
    await client.connection.close();
  }

  const wrongKey = temporalTarget(
    { address: keyAddress, tlsCaPath: f('ca.crt'), tlsServerName: 'localhost', apiKey: 'not-the-key' },
    { HOME: home },
  );
  expect(await refused(() => describeNamespace(wrongKey))).toMatch(/UNAUTHENTICATED/);
  expect(await refused(() => connectWorker(wrongKey).then((c) => c.close()))).toMatch(/401/);
  expect(
    await refused(() =>
      describeNamespace(
        temporalTarget({ address: keyAddress, tlsCaPath: f('ca.crt'), tlsServerName: 'localhost' }, { HOME: home }),
      ),
    ),
  ).toMatch(/UNAUTHENTICATED/);
});
