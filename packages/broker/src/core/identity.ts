import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  API_TOKEN_ID_PATTERN,
  ErrorCode,
  SpillwayError,
  issueCertificate,
  newApiToken,
  normalizeSerial,
  type RevokedEntry,
} from '@spillway/common';
import { DEFAULT_DONOR_POLICY, type ClusterRecord } from '../model.js';
import type {
  ApiTokenCreated,
  ApiTokenInput,
  ApiTokenView,
  IssuedJoinToken,
  JoinResult,
  JoinTokenInput,
} from './api.js';
import { tokenInvalid } from '../store/internal.js';
import type { CoreDeps } from './deps.js';
import { activeCluster, withPeers } from './lookup.js';
import { invalid, validateJoinTokenInput } from './validate.js';

const TOKEN_PATTERN = /^([a-z0-9]{8,64})\.([A-Za-z0-9_-]{43})$/;

const sha256 = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

function hashMatches(secret: string, storedHex: string): boolean {
  const got = sha256(secret);
  const want = Buffer.from(storedHex, 'hex');
  return want.length === got.length && timingSafeEqual(got, want);
}

/** Join tokens, cluster certificates and the revocation list. */
export class Identity {
  private revoked = new Set<string>();
  /** performance.now() of the last load; wall-clock jumps must not stall refreshes. */
  private revokedLoadedAt = Number.NEGATIVE_INFINITY;
  private revokedLoading: Promise<void> | undefined;

  constructor(private readonly deps: CoreDeps) {}

  async createJoinToken(input: JoinTokenInput): Promise<IssuedJoinToken> {
    const { store, log, settings } = this.deps;
    const { clusterId, role, ttlMs } = validateJoinTokenInput(input, settings.joinTokenTtlMs);
    const now = this.deps.now();
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const expiresAt = new Date(now.getTime() + ttlMs).toISOString();
    await store.createJoinToken({
      id,
      secretHash: sha256(secret).toString('hex'),
      clusterId,
      role,
      createdAt: now.toISOString(),
      expiresAt,
    });
    log.info({ tokenId: id, clusterId, role, expiresAt }, 'join token created');
    return { token: `${id}.${secret}`, id, clusterId, role, expiresAt };
  }

  async join(token: string, csrPem: string): Promise<JoinResult> {
    const { store, log, view, bus } = this.deps;
    const m = typeof token === 'string' ? TOKEN_PATTERN.exec(token.trim()) : null;
    if (!m) throw tokenInvalid();
    const [, id, secret] = m as unknown as [string, string, string];
    const now = this.deps.now();
    // Look first, consume last: a bad CSR must not burn the token.
    const record = (await store.listJoinTokens()).find((t) => t.id === id);
    if (
      !record ||
      record.usedAt !== undefined ||
      Date.parse(record.expiresAt) <= now.getTime() ||
      !hashMatches(secret, record.secretHash)
    ) {
      throw tokenInvalid();
    }
    const issued = this.issue(record.clusterId, csrPem, now);
    const consumed = await store.consumeJoinToken(id, sha256(secret).toString('hex'), now);
    const existing = await store.getCluster(consumed.clusterId);
    const cluster: ClusterRecord = {
      id: consumed.clusterId,
      role: consumed.role,
      createdAt: existing?.createdAt ?? now.toISOString(),
      certSerial: normalizeSerial(issued.serial),
      certNotAfter: issued.notAfter.toISOString(),
      policy: existing?.policy ?? { ...DEFAULT_DONOR_POLICY, nodeSelector: {} },
    };
    await store.putCluster(cluster);
    // A new identity replaces the old one: the certificates the cluster held stop working.
    const previous = existing?.certSerial;
    for (const serial of [
      ...(existing?.supersededSerials ?? []),
      ...(previous ? [previous] : []),
    ]) {
      if (normalizeSerial(serial) === cluster.certSerial) continue;
      await this.revoke({
        serial,
        revokedAt: now.toISOString(),
        reason: 'cluster joined again',
        subject: `cluster:${cluster.id}`,
      });
    }
    log.info(
      {
        clusterId: cluster.id,
        role: cluster.role,
        serial: cluster.certSerial,
        rejoin: !!existing,
        ...(previous === undefined ? {} : { revokedSerial: normalizeSerial(previous) }),
      },
      'cluster joined',
    );
    bus.peeringsChanged(await withPeers(view, cluster.id));
    return {
      clusterId: cluster.id,
      certificatePem: issued.certPem,
      caPem: this.deps.ca.certPem,
      notAfter: cluster.certNotAfter!,
    };
  }

  async renew(clusterId: string, csrPem: string): Promise<JoinResult> {
    const { store, log } = this.deps;
    const cluster = await activeCluster(store, clusterId, 'clusterId');
    const now = this.deps.now();
    const issued = this.issue(cluster.id, csrPem, now);
    // The old certificate keeps working until the agent connects with the new one
    // (confirmRenewal): a renewal whose answer was lost must not lock the cluster out.
    const superseded = [...(cluster.supersededSerials ?? [])];
    if (cluster.certSerial !== undefined && !superseded.includes(cluster.certSerial)) {
      superseded.push(cluster.certSerial);
    }
    const updated: ClusterRecord = {
      ...cluster,
      certSerial: normalizeSerial(issued.serial),
      certNotAfter: issued.notAfter.toISOString(),
      supersededSerials: superseded,
    };
    await store.putCluster(updated);
    log.info({ clusterId, serial: updated.certSerial }, 'cluster certificate renewed');
    return {
      clusterId,
      certificatePem: issued.certPem,
      caPem: this.deps.ca.certPem,
      notAfter: updated.certNotAfter!,
    };
  }

  /**
   * The cluster's agent connected with `serial`: if that is its current certificate, a
   * renewal is confirmed and the certificates it replaced are revoked.
   */
  async confirmRenewal(clusterId: string, serial: string): Promise<void> {
    const { store, log } = this.deps;
    const cluster = await store.getCluster(clusterId);
    const superseded = cluster?.supersededSerials ?? [];
    if (!cluster || superseded.length === 0 || cluster.revokedAt !== undefined) return;
    if (normalizeSerial(serial) !== cluster.certSerial) return;
    const at = this.deps.now().toISOString();
    for (const s of superseded) {
      await this.revoke({
        serial: s,
        revokedAt: at,
        reason: 'superseded by renewal',
        subject: `cluster:${clusterId}`,
      });
    }
    // Re-read: only the serial list changes, not a policy written meanwhile.
    const latest = (await store.getCluster(clusterId)) ?? cluster;
    const { supersededSerials: _done, ...rest } = latest;
    await store.putCluster(rest);
    log.info(
      { clusterId, serial: cluster.certSerial, revokedSerials: superseded },
      'certificate renewal confirmed; the certificates it replaced are revoked',
    );
  }

  /** The identity comes from the broker, never from the CSR's subject. */
  private issue(clusterId: string, csrPem: string, now: Date): ReturnType<typeof issueCertificate> {
    return issueCertificate({
      ca: this.deps.ca,
      csrPem,
      profile: 'client',
      identity: { kind: 'cluster', name: clusterId },
      validSeconds: Math.floor(this.deps.settings.certValidityMs / 1000),
      now,
    });
  }

  // ---- REST API tokens

  async listApiTokens(): Promise<ApiTokenView[]> {
    return (await this.deps.store.listApiTokens()).map(({ secretHash: _h, ...t }) => t);
  }

  async createApiToken(input: ApiTokenInput): Promise<ApiTokenCreated> {
    const { role, description = '' } = input;
    if (role !== 'admin' && role !== 'viewer') {
      throw invalid('role', `must be admin or viewer, got ${JSON.stringify(role)}`);
    }
    if (typeof description !== 'string' || description.length > 200) {
      throw invalid('description', 'must be a string of at most 200 characters');
    }
    const { token, record } = newApiToken(role, description, this.deps.now());
    await this.deps.store.putApiToken(record);
    this.deps.log.info({ tokenId: record.id, role }, 'API token created');
    const { secretHash: _h, ...shown } = record;
    return { ...shown, token };
  }

  async deleteApiToken(id: string): Promise<void> {
    if (typeof id !== 'string' || !API_TOKEN_ID_PATTERN.test(id)) {
      throw invalid('id', 'must be an API token id such as at-0123456789ab');
    }
    if (!(await this.deps.store.deleteApiToken(id))) {
      throw new SpillwayError(ErrorCode.NOT_FOUND, `id: no API token ${id}`, { field: 'id' });
    }
    this.deps.log.info({ tokenId: id }, 'API token deleted');
  }

  /** Puts a serial on the revocation list; this replica refuses it at once. */
  async revoke(entry: RevokedEntry): Promise<void> {
    const serial = normalizeSerial(entry.serial);
    await this.deps.store.revoke({ ...entry, serial });
    this.revoked.add(serial);
  }

  async isRevoked(serial: string): Promise<boolean> {
    if (this.refreshDue()) {
      try {
        await this.refreshRevoked();
      } catch (err) {
        // Fail closed until the list was read once; after that a stale list beats an outage.
        if (this.revokedLoadedAt === Number.NEGATIVE_INFINITY) throw err;
        this.deps.log.warn({ err }, 'could not refresh revoked serials; using the cached list');
      }
    }
    return this.revoked.has(normalizeSerial(serial));
  }

  /** Re-reads the list when it is due (the reaper's pass). */
  async refreshIfDue(): Promise<void> {
    if (this.refreshDue()) await this.refreshRevoked();
  }

  private refreshDue(): boolean {
    return performance.now() - this.revokedLoadedAt >= this.deps.settings.revocationRefreshMs;
  }

  private refreshRevoked(): Promise<void> {
    this.revokedLoading ??= (async () => {
      try {
        const entries = await this.deps.store.listRevoked();
        this.revoked = new Set(entries.map((e) => normalizeSerial(e.serial)));
        this.revokedLoadedAt = performance.now();
      } finally {
        this.revokedLoading = undefined;
      }
    })();
    return this.revokedLoading;
  }
}
