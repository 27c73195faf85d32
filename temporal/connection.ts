/**
 * How the CLI and the workers reach Temporal, following Temporal's environment configuration
 * (the same conventions as the `temporal` CLI and the other SDKs, through @temporalio/envconfig):
 *
 *   1. flags                 --address --namespace --api-key --tls --tls-ca-path --tls-cert-path
 *                            --tls-key-path --tls-server-name --profile --config-file
 *   2. environment           TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS,
 *                            TEMPORAL_TLS_SERVER_CA_CERT_PATH|_DATA, TEMPORAL_TLS_CLIENT_CERT_PATH|_DATA,
 *                            TEMPORAL_TLS_CLIENT_KEY_PATH|_DATA, TEMPORAL_TLS_SERVER_NAME,
 *                            TEMPORAL_GRPC_META_*, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE
 *   3. the profile file      TEMPORAL_CONFIG_FILE or ~/.config/temporalio/temporal.toml,
 *                            profile TEMPORAL_PROFILE or "default"
 *   4. defaults              localhost:7233, namespace "default", no TLS
 *
 * Each setting is taken from the first layer that has it. TLS is on when any TLS setting or an API
 * key is given (unless TEMPORAL_TLS=false or --no-tls). Secrets (API key, client key) stay on the
 * machine that reads them: they are never part of a workflow's input or history.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { Client, Connection } from '@temporalio/client';
import {
  loadClientConfigProfile,
  toClientOptions,
  type ClientConfigProfile,
  type ClientConfigTLS,
} from '@temporalio/envconfig';
import type { TLSConfig } from '@temporalio/common/lib/internal-non-workflow';

/** Connection settings given on the command line (commander's camelCase of the flags). */
export interface ConnectionFlags {
  address?: string;
  namespace?: string;
  apiKey?: string;
  /** --tls / --no-tls; unset: on when any TLS setting or an API key is given. */
  tls?: boolean;
  tlsCaPath?: string;
  tlsCertPath?: string;
  tlsKeyPath?: string;
  tlsServerName?: string;
  profile?: string;
  configFile?: string;
}

const CONNECTION_FLAG_KEYS: (keyof ConnectionFlags)[] = [
  'address',
  'namespace',
  'apiKey',
  'tls',
  'tlsCaPath',
  'tlsCertPath',
  'tlsKeyPath',
  'tlsServerName',
  'profile',
  'configFile',
];

export interface TemporalTarget {
  address: string;
  namespace: string;
  apiKey?: string;
  tls?: TLSConfig | boolean;
  metadata?: Record<string, string>;
  /** "mTLS, API key" / "TLS" / "plain text": for start-up lines and errors, never the secrets. */
  security: string;
}

let cliFlags: ConnectionFlags = {};

/** The flags of this process's command line (the CLI sets them before a command runs). */
export function setConnectionFlags(flags: ConnectionFlags): void {
  cliFlags = pickConnectionFlags(flags as Record<string, unknown>);
}

/**
 * The connection flags as options of `program` (the `wmss` command, or a worker entry point's), taken
 * into setConnectionFlags before any of its commands runs, so every entry point parses them alike.
 */
export function addConnectionFlags(program: Command): Command {
  return program
    .option('--address <host:port>', 'Temporal frontend (env TEMPORAL_ADDRESS; default localhost:7233)')
    .option('--namespace <name>', 'Temporal namespace (env TEMPORAL_NAMESPACE; default "default")')
    .option(
      '--api-key <key>',
      'API key, sent as a bearer token; implies TLS (env TEMPORAL_API_KEY; prefer the variable or the profile file: flags are visible in ps)',
    )
    .option('--tls', 'connect with TLS (implied by the --tls-* options and an API key)')
    .option('--no-tls', 'connect without TLS even if the profile or environment says otherwise')
    .option(
      '--tls-ca-path <file>',
      "CA certificate(s) that signed the server's certificate (env TEMPORAL_TLS_SERVER_CA_CERT_PATH)",
    )
    .option('--tls-cert-path <file>', 'client certificate for mTLS (env TEMPORAL_TLS_CLIENT_CERT_PATH)')
    .option('--tls-key-path <file>', 'private key of the client certificate (env TEMPORAL_TLS_CLIENT_KEY_PATH)')
    .option(
      '--tls-server-name <name>',
      "server name expected in the server's certificate, and sent as SNI (env TEMPORAL_TLS_SERVER_NAME)",
    )
    .option('--profile <name>', 'profile of the config file (env TEMPORAL_PROFILE; default "default")')
    .option(
      '--config-file <file>',
      'Temporal client config file, TOML (env TEMPORAL_CONFIG_FILE; default ~/.config/temporalio/temporal.toml)',
    )
    .hook('preAction', (_program, action) => setConnectionFlags(action.optsWithGlobals()));
}

function pickConnectionFlags(opts: Record<string, unknown>): ConnectionFlags {
  const out: Record<string, unknown> = {};
  for (const key of CONNECTION_FLAG_KEYS) if (opts[key] !== undefined && opts[key] !== '') out[key] = opts[key];
  return out;
}

/** The profile of the file and environment (layers 2–4), before flags. */
function loadProfile(flags: ConnectionFlags, env: NodeJS.ProcessEnv): ClientConfigProfile {
  if (flags.configFile && !existsSync(flags.configFile))
    throw new Error(`--config-file ${flags.configFile} does not exist`);
  const vars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === 'string'));
  return loadClientConfigProfile({
    profile: flags.profile,
    configSource: flags.configFile ? { path: flags.configFile } : undefined,
    overrideEnvVars: vars,
  });
}

/**
 * Where and how to connect: flags over environment over the profile file over defaults.
 * `flags` are merged over the command line's (setConnectionFlags); `env` defaults to process.env.
 */
export function temporalTarget(flags: ConnectionFlags = {}, env: NodeJS.ProcessEnv = process.env): TemporalTarget {
  const f = { ...cliFlags, ...pickConnectionFlags(flags as Record<string, unknown>) };
  const profile = loadProfile(f, env);
  const tls: ClientConfigTLS | undefined =
    profile.tls || f.tls !== undefined || f.tlsCaPath || f.tlsCertPath || f.tlsKeyPath || f.tlsServerName
      ? { ...profile.tls }
      : undefined;
  if (tls) {
    if (f.tls !== undefined) tls.disabled = !f.tls;
    if (f.tlsCaPath) tls.serverCACert = { path: f.tlsCaPath };
    if (f.tlsCertPath) tls.clientCert = { path: f.tlsCertPath };
    if (f.tlsKeyPath) tls.clientKey = { path: f.tlsKeyPath };
    if (f.tlsServerName) tls.serverName = f.tlsServerName;
    if (!tls.disabled && Boolean(tls.clientCert) !== Boolean(tls.clientKey)) {
      throw new Error(
        'a TLS client certificate and its key go together: give both (--tls-cert-path and --tls-key-path, or TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH)',
      );
    }
  }
  const merged: ClientConfigProfile = {
    ...profile,
    address: f.address ?? profile.address,
    namespace: f.namespace ?? profile.namespace,
    apiKey: f.apiKey ?? profile.apiKey,
    tls,
  };
  const { connectionOptions, namespace } = toClientOptions(merged);
  const tlsOn =
    connectionOptions.tls !== undefined && connectionOptions.tls !== false && connectionOptions.tls !== null;
  const mutual = tlsOn && typeof connectionOptions.tls === 'object' && Boolean(connectionOptions.tls?.clientCertPair);
  const security = [tlsOn ? (mutual ? 'mTLS' : 'TLS') : 'plain text', merged.apiKey ? 'API key' : '']
    .filter(Boolean)
    .join(', ');
  return {
    address: connectionOptions.address ?? 'localhost:7233',
    namespace: namespace ?? 'default',
    apiKey: merged.apiKey,
    tls: tlsOn ? (connectionOptions.tls as TLSConfig | boolean) : undefined,
    metadata: merged.grpcMeta,
    security,
  };
}

/** The options both Connection (client) and NativeConnection (worker) take. */
export function connectionOptions(target: TemporalTarget) {
  return {
    address: target.address,
    ...(target.tls !== undefined && { tls: target.tls }),
    ...(target.apiKey !== undefined && { apiKey: target.apiKey }),
    ...(target.metadata && { metadata: target.metadata }),
  };
}

export async function connectClient(target = temporalTarget()): Promise<Client> {
  const connection = await Connection.connect({ ...connectionOptions(target), connectTimeout: '5s' });
  return new Client({ connection, namespace: target.namespace });
}

/** A worker's connection (Rust core) with the same settings. */
export async function connectWorker(target = temporalTarget()): Promise<import('@temporalio/worker').NativeConnection> {
  const { NativeConnection } = await import('@temporalio/worker');
  return NativeConnection.connect(connectionOptions(target));
}

/**
 * The Web UI address for a workflow: `uiUrl` (a dev server this process started), WMSS_UI_URL, or
 * the dev server's convention, UI port = gRPC port + 1000 (7233 → 8233, as `temporal server
 * start-dev` and `wmss server` choose it), on the frontend's host.
 */
export function webUiLink(workflowId: string, target = temporalTarget(), uiUrl?: string): string {
  const [host, port] = splitHostPort(target.address);
  const base = (uiUrl || process.env.WMSS_UI_URL || `http://${host}:${(port ?? 7233) + 1000}`).replace(/\/+$/, '');
  return `${base}/namespaces/${encodeURIComponent(target.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

/** host and port of `host:port` or `[v6]:port`; no port: undefined. */
function splitHostPort(address: string): [string, number | undefined] {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(address.trim());
  return m ? [m[1], m[2] ? Number(m[2]) : undefined] : [address, undefined];
}
