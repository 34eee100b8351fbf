import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { API_TOKEN_ID_PATTERN, type ApiTokenRecord } from './api-token.js';
import { ErrorCode, SpillwayError, isSpillwayError } from './errors.js';
import type { Logger } from './logging.js';
import {
  createCertificateAuthority,
  issueKeyAndCertificate,
  verifyCertificate,
  type CertificateAuthority,
} from './pki.js';

/**
 * The broker's PKI directory (`--pki-dir`, default `<data-dir>/pki`), as written by
 * `spillctl broker init` or by the broker itself on first start:
 *
 *   ca.crt           PEM, the Spillway CA certificate clusters and admins trust   (0644)
 *   ca.key           PEM, the CA's private key; signs cluster CSRs                 (0600)
 *   server.crt       PEM, the broker's serving certificate, issued by ca.crt      (0644)
 *   server.key       PEM, its private key                                          (0600)
 *   api-tokens.json  optional: {"tokens": [{id, secretHash, role, description, createdAt}]}
 *                    REST tokens `<id>.<secret>`, only sha256(secret) hex is kept (0600)
 *
 * The directory itself is created 0700. Tokens in api-tokens.json are copied into the store
 * at start-up, so a token made by `spillctl broker init` works before the first REST call.
 * Both the broker and spillctl write it, so it lives here rather than in either of them.
 */
export const PKI_FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  serverCert: 'server.crt',
  serverKey: 'server.key',
  apiTokens: 'api-tokens.json',
} as const;

export function pkiPaths(dir: string): Record<keyof typeof PKI_FILES, string> {
  return {
    caCert: join(dir, PKI_FILES.caCert),
    caKey: join(dir, PKI_FILES.caKey),
    serverCert: join(dir, PKI_FILES.serverCert),
    serverKey: join(dir, PKI_FILES.serverKey),
    apiTokens: join(dir, PKI_FILES.apiTokens),
  };
}

export interface BrokerPki {
  ca: CertificateAuthority;
  serverCertPem: string;
  serverKeyPem: string;
  apiTokens: ApiTokenRecord[];
  /** Files this call wrote (empty when everything was there already). */
  created: string[];
}

export interface EnsurePkiOptions {
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  logger: Logger;
  now?: Date;
}

const SERVER_CERT_DAYS = 365;
/** Reissue the serving certificate a while before it lapses rather than on the last day. */
const RENEW_BEFORE_MS = 7 * 86_400_000;

function fail(message: string, cause?: unknown): never {
  throw new SpillwayError(ErrorCode.INVALID_CONFIG, message, {
    field: '--pki-dir',
    ...(cause === undefined ? {} : { cause }),
  });
}

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    return fail(`cannot read ${path}: ${(err as Error).message}`, err);
  }
}

/** `wx` so two brokers starting on one directory never overwrite each other's CA. */
function writeNew(path: string, content: string, mode: number): void {
  writeFileSync(path, content, { mode, flag: 'wx' });
}

function warnIfOpen(path: string, logger: Logger): void {
  const mode = statSync(path).mode & 0o777;
  // Group read is how Kubernetes gives a non-root pod its mounted Secret (fsGroup), so
  // only access for "others" is worth a warning.
  if ((mode & 0o007) !== 0) {
    logger.warn(
      { path, mode: mode.toString(8) },
      'private key is readable by other users; chmod 600 (or 640 with a dedicated group) it',
    );
  }
}

function parseTokens(path: string): ApiTokenRecord[] {
  let doc: unknown;
  try {
    doc = JSON.parse(read(path));
  } catch (err) {
    if (isSpillwayError(err)) throw err;
    return fail(`${path} is not valid JSON`, err);
  }
  const list = (doc as { tokens?: unknown }).tokens;
  if (!Array.isArray(list)) return fail(`${path}: expected {"tokens": [...]}`);
  return list.map((t: unknown, i): ApiTokenRecord => {
    const r = t as Partial<ApiTokenRecord>;
    if (
      typeof r.id !== 'string' ||
      !API_TOKEN_ID_PATTERN.test(r.id) ||
      typeof r.secretHash !== 'string' ||
      !/^[0-9a-f]{64}$/.test(r.secretHash) ||
      (r.role !== 'admin' && r.role !== 'viewer')
    ) {
      return fail(`${path}: tokens[${i}] needs id, secretHash (sha256 hex) and role admin|viewer`);
    }
    return {
      id: r.id,
      secretHash: r.secretHash,
      role: r.role,
      description: typeof r.description === 'string' ? r.description : '',
      createdAt: typeof r.createdAt === 'string' ? r.createdAt : new Date(0).toISOString(),
    };
  });
}

/**
 * Loads the broker's CA, serving pair and bootstrap API tokens from `dir`, creating the CA
 * and serving certificate when absent. Half a pair (a certificate without its key) is an
 * error rather than something to paper over: it means the directory was damaged.
 */
export function ensureBrokerPki(dir: string, opts: EnsurePkiOptions): BrokerPki {
  const now = opts.now ?? new Date();
  const paths = pkiPaths(dir);
  const created: string[] = [];
  mkdirSync(dir, { recursive: true, mode: 0o700 });

  const hasCaCert = existsSync(paths.caCert);
  const hasCaKey = existsSync(paths.caKey);
  let ca: CertificateAuthority;
  if (hasCaCert && hasCaKey) {
    ca = { certPem: read(paths.caCert), keyPem: read(paths.caKey) };
    warnIfOpen(paths.caKey, opts.logger);
  } else if (hasCaCert || hasCaKey) {
    return fail(
      `${dir} holds ${hasCaCert ? PKI_FILES.caCert : PKI_FILES.caKey} without ${hasCaCert ? PKI_FILES.caKey : PKI_FILES.caCert}; restore it or empty the directory`,
    );
  } else {
    ca = createCertificateAuthority({ commonName: 'Spillway CA', now });
    writeNew(paths.caKey, ca.keyPem, 0o600);
    writeNew(paths.caCert, ca.certPem, 0o644);
    created.push(paths.caCert, paths.caKey);
  }

  const hasServerCert = existsSync(paths.serverCert);
  const hasServerKey = existsSync(paths.serverKey);
  let serverCertPem: string | undefined;
  let serverKeyPem: string | undefined;
  if (hasServerCert && hasServerKey) {
    serverCertPem = read(paths.serverCert);
    serverKeyPem = read(paths.serverKey);
    warnIfOpen(paths.serverKey, opts.logger);
    try {
      const info = verifyCertificate(serverCertPem, { caCertPem: ca.certPem, now });
      if (info.notAfter.getTime() - now.getTime() < RENEW_BEFORE_MS) {
        opts.logger.warn({ notAfter: info.notAfter }, 'server certificate lapses soon; reissuing');
        serverCertPem = undefined;
      }
    } catch (err) {
      if (isSpillwayError(err, ErrorCode.CERT_EXPIRED)) serverCertPem = undefined;
      else return fail(`${paths.serverCert} was not issued by ${paths.caCert}`, err);
    }
  } else if (hasServerCert || hasServerKey) {
    return fail(
      `${dir} holds ${hasServerCert ? PKI_FILES.serverCert : PKI_FILES.serverKey} without its pair; restore it or delete both`,
    );
  }
  if (serverCertPem === undefined || serverKeyPem === undefined) {
    const issued = issueKeyAndCertificate({
      ca,
      profile: 'server',
      identity: { kind: 'broker', name: 'spillway-broker' },
      commonName: 'spillway-broker',
      dnsNames: opts.dnsNames,
      ipAddresses: opts.ipAddresses,
      validSeconds: SERVER_CERT_DAYS * 86_400,
      now,
    });
    serverCertPem = issued.certPem;
    serverKeyPem = issued.keyPem;
    // A renewal replaces the old pair, so plain writes here; the key keeps mode 0600.
    writeFileSync(paths.serverKey, serverKeyPem, { mode: 0o600 });
    writeFileSync(paths.serverCert, serverCertPem, { mode: 0o644 });
    created.push(paths.serverCert, paths.serverKey);
  }

  const apiTokens = existsSync(paths.apiTokens) ? parseTokens(paths.apiTokens) : [];
  if (created.length > 0) opts.logger.info({ dir, files: created }, 'wrote broker PKI files');
  return { ca, serverCertPem, serverKeyPem, apiTokens, created };
}
