import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  ErrorCode,
  SpillwayError,
  ensureBrokerPki,
  issueKeyAndCertificate,
  newApiToken,
  pkiPaths,
  silentLogger,
} from '@spillway/common';

/** Files `broker init` adds next to the broker's own PKI files: the admin identity. */
export const ADMIN_FILES = { cert: 'admin.crt', key: 'admin.key' } as const;

export interface BrokerInitOptions {
  /** The broker's --pki-dir. */
  dir: string;
  force: boolean;
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  adminName: string;
  now?: Date;
}

export interface BrokerInitResult {
  dir: string;
  caFile: string;
  /** Every file written, with its mode. */
  files: { path: string; mode: string }[];
  adminCertFile: string;
  adminKeyFile: string;
  /** `<id>.<secret>`, shown once; only its hash is in api-tokens.json. */
  adminToken: string;
  adminTokenId: string;
}

const ADMIN_CERT_DAYS = 365;

/**
 * Creates the broker's PKI directory exactly as the broker reads it (the same ensureBrokerPki
 * the broker runs at start-up writes the CA and server pair), then an admin client certificate and
 * an admin REST token whose hash goes into api-tokens.json. An existing CA is kept unless
 * `force`, because replacing it cuts off every cluster that joined with it.
 */
export function brokerInit(opts: BrokerInitOptions): BrokerInitResult {
  const dir = resolve(opts.dir);
  const paths = pkiPaths(dir);
  const existing = [paths.caCert, paths.caKey].filter((p) => existsSync(p));
  if (existing.length > 0 && !opts.force) {
    throw new SpillwayError(
      ErrorCode.ALREADY_EXISTS,
      `${existing[0]} exists: ${dir} already holds a CA; pass --force to replace it (every cluster must then join again)`,
      { field: '--dir' },
    );
  }
  if (opts.force) {
    for (const p of [
      paths.caCert,
      paths.caKey,
      paths.serverCert,
      paths.serverKey,
      join(dir, ADMIN_FILES.cert),
      join(dir, ADMIN_FILES.key),
    ]) {
      rmSync(p, { force: true });
    }
  }
  const pki = ensureBrokerPki(dir, {
    dnsNames: opts.dnsNames,
    ipAddresses: opts.ipAddresses,
    logger: silentLogger(),
    ...(opts.now ? { now: opts.now } : {}),
  });
  const admin = issueKeyAndCertificate({
    ca: pki.ca,
    profile: 'client',
    identity: { kind: 'admin', name: opts.adminName },
    commonName: `admin:${opts.adminName}`,
    validSeconds: ADMIN_CERT_DAYS * 86_400,
    ...(opts.now ? { now: opts.now } : {}),
  });
  const adminCertFile = join(dir, ADMIN_FILES.cert);
  const adminKeyFile = join(dir, ADMIN_FILES.key);
  writeFileSync(adminKeyFile, admin.keyPem, { mode: 0o600 });
  writeFileSync(adminCertFile, admin.certPem, { mode: 0o644 });

  // Earlier tokens stay valid: the broker copies every entry into its store at start-up.
  const { token, record } = newApiToken('admin', `spillctl broker init (${opts.adminName})`);
  const tokens = existsSync(paths.apiTokens)
    ? ((JSON.parse(readFileSync(paths.apiTokens, 'utf8')) as { tokens?: unknown[] }).tokens ?? [])
    : [];
  writeFileSync(paths.apiTokens, `${JSON.stringify({ tokens: [...tokens, record] }, null, 2)}\n`, {
    mode: 0o600,
  });

  // A umask never adds bits, but an existing file keeps its old mode: set them explicitly.
  const modes: [string, number][] = [
    [paths.caCert, 0o644],
    [paths.caKey, 0o600],
    [paths.serverCert, 0o644],
    [paths.serverKey, 0o600],
    [adminCertFile, 0o644],
    [adminKeyFile, 0o600],
    [paths.apiTokens, 0o600],
  ];
  for (const [p, m] of modes) chmodSync(p, m);
  chmodSync(dir, 0o700);
  return {
    dir,
    caFile: paths.caCert,
    files: modes.map(([path, m]) => ({ path, mode: `0${m.toString(8)}` })),
    adminCertFile,
    adminKeyFile,
    adminToken: token,
    adminTokenId: record.id,
  };
}
