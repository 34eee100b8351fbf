import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { ErrorCode, SpillwayError, isSpillwayError, verifyCertificate } from '@spillway/common';
import type { Metrics } from '../metrics.js';
import type { Store } from '../store/store.js';
import { digestsEqual, parseApiToken, sha256Hex, type ApiRole } from './tokens.js';

/** Who is calling: a stored token, a bootstrap token from config, or an admin certificate. */
export interface Principal {
  kind: 'token' | 'bootstrap' | 'certificate';
  /** Token id, `bootstrap-admin` / `bootstrap-viewer`, or the certificate's admin name. */
  name: string;
  role: ApiRole;
}

export interface RestAuthOptions {
  store: Store;
  /** Bootstrap tokens from config; compared by hash, never stored. */
  adminToken?: string | undefined;
  viewerToken?: string | undefined;
  /** Failed authentications per client IP per window before 429. */
  failureLimit: number;
  windowMs?: number;
  /** CA for admin client certificates (REST over TLS). */
  caCertPem?: string | undefined;
  isRevoked?: ((serial: string) => Promise<boolean>) | undefined;
  metrics?: Metrics | undefined;
  now?: () => number;
}

export interface AuthRequest {
  ip: string;
  authorization: string | undefined;
  socket: unknown;
}

const MAX_TRACKED_IPS = 10_000;

/**
 * Fixed-window counter of failed authentications per client IP. Once an IP has failed
 * `limit` times in a window, its further failures are answered 429 until the window ends.
 * A valid credential from that IP still works: behind a NAT or an ingress many callers share
 * one address, and one caller's wrong tokens must not lock out the others. Guessing is no
 * way in (API token secrets are 256 random bits, bootstrap tokens 16+ characters); the limit
 * marks and slows a noisy address and bounds what it costs in logs and metrics.
 */
export class AuthFailureLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}

  /** Seconds until `ip` may try again, or 0 if it may now. */
  retryAfter(ip: string): number {
    const w = this.windows.get(ip);
    if (!w) return 0;
    const left = w.start + this.windowMs - this.now();
    if (left <= 0) {
      this.windows.delete(ip);
      return 0;
    }
    return w.count >= this.limit ? Math.ceil(left / 1000) : 0;
  }

  fail(ip: string): void {
    const now = this.now();
    const w = this.windows.get(ip);
    if (!w || now - w.start >= this.windowMs) {
      if (this.windows.size >= MAX_TRACKED_IPS) this.prune(now);
      this.windows.set(ip, { start: now, count: 1 });
    } else {
      w.count += 1;
    }
  }

  private prune(now: number): void {
    for (const [ip, w] of this.windows) if (now - w.start >= this.windowMs) this.windows.delete(ip);
    // Under a flood from many addresses, forget the oldest rather than grow without bound.
    while (this.windows.size >= MAX_TRACKED_IPS) {
      const first = this.windows.keys().next();
      if (first.done) break;
      this.windows.delete(first.value);
    }
  }
}

/** Refusals of a credential, which an address over its failure limit gets as 429. */
function isAuthFailure(code: string): boolean {
  return code === ErrorCode.UNAUTHENTICATED || code.startsWith('CERT_');
}

const ROLE_RANK: Record<ApiRole, number> = { viewer: 1, admin: 2 };

export function roleAllows(have: ApiRole, need: ApiRole): boolean {
  return ROLE_RANK[have] >= ROLE_RANK[need];
}

/** Authenticates REST callers. Tokens are compared as SHA-256 digests in constant time. */
export class RestAuth {
  private readonly bootstrap: { hash: string; principal: Principal }[] = [];
  private readonly limiter: AuthFailureLimiter;

  constructor(private readonly opts: RestAuthOptions) {
    if (opts.adminToken)
      this.bootstrap.push({
        hash: sha256Hex(opts.adminToken),
        principal: { kind: 'bootstrap', name: 'bootstrap-admin', role: 'admin' },
      });
    if (opts.viewerToken)
      this.bootstrap.push({
        hash: sha256Hex(opts.viewerToken),
        principal: { kind: 'bootstrap', name: 'bootstrap-viewer', role: 'viewer' },
      });
    this.limiter = new AuthFailureLimiter(
      opts.failureLimit,
      opts.windowMs ?? 60_000,
      opts.now ?? Date.now,
    );
  }

  /**
   * The caller's principal. The credential is checked first, so a valid one is never refused
   * for others' failures from the same address; a failure from an address over its limit is
   * answered RATE_LIMITED instead of UNAUTHENTICATED.
   */
  async authenticate(req: AuthRequest): Promise<Principal> {
    const wait = this.limiter.retryAfter(req.ip);
    try {
      return await this.check(req);
    } catch (err) {
      if (wait > 0 && isSpillwayError(err) && isAuthFailure(err.code)) {
        throw new SpillwayError(
          ErrorCode.RATE_LIMITED,
          `too many failed authentications from ${req.ip}; retry in ${wait}s`,
          { details: { retryAfterSeconds: wait } },
        );
      }
      throw err;
    }
  }

  private async check(req: AuthRequest): Promise<Principal> {
    const fromCert = await this.fromCertificate(req);
    if (fromCert) return fromCert;

    const header = req.authorization;
    if (header === undefined || header === '') {
      throw new SpillwayError(
        ErrorCode.UNAUTHENTICATED,
        'missing Authorization header: send "Authorization: Bearer <token>"',
        { field: 'Authorization' },
      );
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m)
      return this.reject(req.ip, 'malformed', 'Authorization header must be "Bearer <token>"');
    const presented = m[1]!;

    const presentedHash = sha256Hex(presented);
    let match: Principal | undefined;
    // Compare against every bootstrap token so timing does not reveal which one matched.
    for (const b of this.bootstrap) if (digestsEqual(presentedHash, b.hash)) match = b.principal;
    if (match) return match;

    const parsed = parseApiToken(presented);
    if (parsed) {
      const record = await this.opts.store.getApiToken(parsed.id);
      const secretHash = sha256Hex(parsed.secret);
      if (record && digestsEqual(secretHash, record.secretHash)) {
        return { kind: 'token', name: record.id, role: record.role };
      }
    }
    return this.reject(req.ip, 'invalid_token', 'the bearer token is not valid');
  }

  private reject(ip: string, reason: string, message: string): never {
    this.limiter.fail(ip);
    this.opts.metrics?.authFailure(reason);
    throw new SpillwayError(ErrorCode.UNAUTHENTICATED, message, { field: 'Authorization' });
  }

  /** An admin client certificate (spillway://admin/<name>) on a TLS connection. */
  private async fromCertificate(req: AuthRequest): Promise<Principal | undefined> {
    const caCertPem = this.opts.caCertPem;
    const socket = req.socket as Partial<TLSSocket> | undefined;
    if (!caCertPem || !socket?.encrypted || typeof socket.getPeerCertificate !== 'function') {
      return undefined;
    }
    const peer = socket.getPeerCertificate(false);
    if (!peer?.raw) return undefined;
    try {
      const pem = new X509Certificate(peer.raw).toString();
      const info = verifyCertificate(pem, { caCertPem, requireKind: 'admin' });
      if (this.opts.isRevoked && (await this.opts.isRevoked(info.serial))) {
        throw new SpillwayError(ErrorCode.CERT_REVOKED, 'client certificate has been revoked');
      }
      return { kind: 'certificate', name: info.identity?.name ?? info.commonName, role: 'admin' };
    } catch (err) {
      // A cluster's certificate is no REST credential, but it is no attack either: fall back
      // to the bearer token. Anything else presented as a certificate counts as a failure.
      if (isSpillwayError(err, ErrorCode.CERT_UNTRUSTED) && socket.authorized === true) {
        return undefined;
      }
      if (isSpillwayError(err) && err.code.startsWith('CERT_')) {
        return this.reject(req.ip, 'bad_certificate', `client certificate refused: ${err.message}`);
      }
      throw err;
    }
  }
}
