/**
 * Connection settings (temporal/connection.ts): flags over TEMPORAL_* variables over the TOML
 * profile file over defaults, as Temporal's environment configuration defines them. The real
 * TLS/mTLS handshakes are in test/integration/tls.test.ts (nginx as a TLS proxy).
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TLSConfig } from '@temporalio/common/lib/internal-non-workflow';
import { setConnectionFlags, temporalTarget } from '../../temporal/connection';
import { buildProgram } from '../../client/cli';
import { cleanupTmp, tmpDir } from './helpers/tmp';

afterAll(cleanupTmp);
afterEach(() => setConnectionFlags({}));

function files() {
  const dir = tmpDir();
  const write = (name: string, text: string) => {
    writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  const ca = write('ca.pem', 'CA-FROM-FILE');
  const fileCert = write('file.crt', 'CERT-FROM-FILE');
  const fileKey = write('file.key', 'KEY-FROM-FILE');
  const envCert = write('env.crt', 'CERT-FROM-ENV');
  const envKey = write('env.key', 'KEY-FROM-ENV');
  const flagCert = write('flag.crt', 'CERT-FROM-FLAG');
  const flagKey = write('flag.key', 'KEY-FROM-FLAG');
  const toml = write(
    'temporal.toml',
    [
      '[profile.default]',
      'address = "file-default:7233"',
      'namespace = "ns-file-default"',
      '',
      '[profile.secure]',
      'address = "file-secure:7233"',
      'namespace = "ns-file-secure"',
      'api_key = "key-from-file"',
      '[profile.secure.tls]',
      `server_ca_cert_path = "${ca}"`,
      `client_cert_path = "${fileCert}"`,
      `client_key_path = "${fileKey}"`,
      'server_name = "temporal.internal"',
      '',
    ].join('\n'),
  );
  return { dir, ca, fileCert, fileKey, envCert, envKey, flagCert, flagKey, toml };
}

const text = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString() : undefined);
const tlsOf = (t: ReturnType<typeof temporalTarget>) => t.tls as TLSConfig;

test('defaults: localhost:7233, namespace default, plain text', () => {
  const t = temporalTarget({}, { HOME: tmpDir() });
  expect(t).toMatchObject({ address: 'localhost:7233', namespace: 'default', security: 'plain text' });
  expect(t.tls).toBeUndefined();
  expect(t.apiKey).toBeUndefined();
});

test('the profile file: default profile, TEMPORAL_PROFILE, and --profile over it', () => {
  const f = files();
  expect(temporalTarget({}, { TEMPORAL_CONFIG_FILE: f.toml })).toMatchObject({
    address: 'file-default:7233',
    namespace: 'ns-file-default',
    security: 'plain text',
  });
  const secure = temporalTarget({}, { TEMPORAL_CONFIG_FILE: f.toml, TEMPORAL_PROFILE: 'secure' });
  expect(secure).toMatchObject({
    address: 'file-secure:7233',
    namespace: 'ns-file-secure',
    apiKey: 'key-from-file',
    security: 'mTLS, API key',
  });
  expect(text(tlsOf(secure).serverRootCACertificate)).toBe('CA-FROM-FILE');
  expect(text(tlsOf(secure).clientCertPair?.crt)).toBe('CERT-FROM-FILE');
  expect(tlsOf(secure).serverNameOverride).toBe('temporal.internal');
  expect(
    temporalTarget({ profile: 'default' }, { TEMPORAL_CONFIG_FILE: f.toml, TEMPORAL_PROFILE: 'secure' }).address,
  ).toBe('file-default:7233');
  // the default location: $XDG_CONFIG_HOME/temporalio/temporal.toml (~/.config/… without it)
  const home = tmpDir();
  mkdirSync(path.join(home, '.config', 'temporalio'), { recursive: true });
  copyFileSync(f.toml, path.join(home, '.config', 'temporalio', 'temporal.toml'));
  expect(temporalTarget({}, { HOME: home }).address).toBe('file-default:7233');
  expect(() => temporalTarget({ profile: 'nope' }, { TEMPORAL_CONFIG_FILE: f.toml })).toThrow(/nope/);
  expect(() => temporalTarget({ configFile: path.join(f.dir, 'missing.toml') }, {})).toThrow(/does not exist/);
});

test('environment over the file, flags over the environment', () => {
  const f = files();
  const env = {
    TEMPORAL_CONFIG_FILE: f.toml,
    TEMPORAL_PROFILE: 'secure',
    TEMPORAL_ADDRESS: 'env:7233',
    TEMPORAL_API_KEY: 'key-from-env',
    TEMPORAL_TLS_CLIENT_CERT_PATH: f.envCert,
    TEMPORAL_TLS_CLIENT_KEY_PATH: f.envKey,
  };
  const fromEnv = temporalTarget({}, env);
  expect(fromEnv).toMatchObject({ address: 'env:7233', namespace: 'ns-file-secure', apiKey: 'key-from-env' });
  expect(text(tlsOf(fromEnv).clientCertPair?.crt)).toBe('CERT-FROM-ENV');
  expect(text(tlsOf(fromEnv).clientCertPair?.key)).toBe('KEY-FROM-ENV');
  expect(text(tlsOf(fromEnv).serverRootCACertificate)).toBe('CA-FROM-FILE'); // not overridden: from the file

  const fromFlags = temporalTarget(
    {
      address: 'flag:7233',
      namespace: 'ns-flag',
      apiKey: 'key-from-flag',
      tlsCertPath: f.flagCert,
      tlsKeyPath: f.flagKey,
      tlsServerName: 'flag.name',
    },
    env,
  );
  expect(fromFlags).toMatchObject({
    address: 'flag:7233',
    namespace: 'ns-flag',
    apiKey: 'key-from-flag',
    security: 'mTLS, API key',
  });
  expect(text(tlsOf(fromFlags).clientCertPair?.crt)).toBe('CERT-FROM-FLAG');
  expect(tlsOf(fromFlags).serverNameOverride).toBe('flag.name');
});

test('TLS is implied by an API key or any TLS setting, and can be turned off', () => {
  const f = files();
  expect(temporalTarget({}, { TEMPORAL_API_KEY: 'k' })).toMatchObject({ tls: true, security: 'TLS, API key' });
  expect(temporalTarget({}, { TEMPORAL_API_KEY: 'k', TEMPORAL_TLS: 'false' })).toMatchObject({
    tls: undefined,
    security: 'plain text, API key',
  });
  expect(temporalTarget({ tlsCaPath: f.ca }, {}).security).toBe('TLS');
  expect(temporalTarget({ tls: true }, {}).security).toBe('TLS');
  expect(
    temporalTarget({ tls: false }, { TEMPORAL_CONFIG_FILE: f.toml, TEMPORAL_PROFILE: 'secure' }).tls,
  ).toBeUndefined();
  expect(temporalTarget({}, { TEMPORAL_TLS: 'true' }).security).toBe('TLS');
});

test('a client certificate without its key (or the reverse) is an error, not a silent plain TLS connection', () => {
  const f = files();
  expect(() => temporalTarget({ tlsCertPath: f.flagCert }, {})).toThrow(/certificate and its key go together/);
  expect(() => temporalTarget({}, { TEMPORAL_TLS_CLIENT_KEY_PATH: f.envKey })).toThrow(/go together/);
  expect(() => temporalTarget({ tlsCaPath: path.join(f.dir, 'missing.pem') }, {})).toThrow(/missing\.pem/);
});

test('the CLI passes its global flags (before or after the command) to every connection', async () => {
  const f = files();
  const seen: unknown[] = [];
  const program = buildProgram();
  program.command('probe').action(() => {
    seen.push(temporalTarget({}, {}));
  });
  await program.parseAsync([
    'node',
    'wmss',
    '--namespace',
    'ns1',
    'probe',
    '--address',
    'cli:1',
    '--tls-ca-path',
    f.ca,
  ]);
  expect(seen[0]).toMatchObject({ address: 'cli:1', namespace: 'ns1', security: 'TLS' });
});
