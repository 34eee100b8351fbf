import { X509Certificate, createPrivateKey } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { experimental } from '@grpc/grpc-js';
import {
  ErrorCode,
  SpillwayError,
  assertValidAt,
  inspectCertificate,
  verifyCertificate,
  type CertificateInfo,
} from '@spillway/common';

/**
 * TLS for the broker's one gRPC port.
 *
 * grpc-js's `ServerCredentials.createSsl(ca, pairs, true)` makes a client certificate
 * mandatory at the handshake, which would lock out Join (a joining cluster has no
 * certificate yet). Its experimental certificate-provider credentials instead set
 * `requestCert: true, rejectUnauthorized: false`: the server asks for a certificate and
 * OpenSSL verifies it against the CA, but the handshake also succeeds without one.
 * `call.getAuthContext()` exposes the peer certificate only when the socket is
 * `authorized`, i.e. it chained to our CA and was in its validity period. Every handler
 * except Join then requires that certificate and re-verifies it (CA, validity, identity,
 * revocation). The same provider pushes new certificates into the live server
 * (`setSecureContext`), so rotation needs no restart.
 */

export interface TlsMaterial {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export class ReloadableCertificateProvider implements experimental.CertificateProvider {
  private material: TlsMaterial;
  private readonly caListeners = new Set<experimental.CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<experimental.IdentityCertificateUpdateListener>();

  constructor(material: TlsMaterial) {
    checkMaterial(material);
    this.material = material;
  }

  get caPem(): string {
    return this.material.caPem;
  }

  /** Replaces CA and/or serving pair; new handshakes use them at once, live ones stay. */
  update(next: Partial<TlsMaterial>): void {
    const merged = { ...this.material, ...next };
    checkMaterial(merged);
    this.material = merged;
    for (const l of this.caListeners) l({ caCertificate: Buffer.from(merged.caPem) });
    for (const l of this.identityListeners)
      l({ certificate: Buffer.from(merged.certPem), privateKey: Buffer.from(merged.keyPem) });
  }

  addCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    // Asynchronously: grpc-js registers its watcher only after adding this listener.
    process.nextTick(() => {
      if (this.caListeners.has(listener))
        listener({ caCertificate: Buffer.from(this.material.caPem) });
    });
  }
  removeCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    process.nextTick(() => {
      if (!this.identityListeners.has(listener)) return;
      listener({
        certificate: Buffer.from(this.material.certPem),
        privateKey: Buffer.from(this.material.keyPem),
      });
    });
  }
  removeIdentityCertificateListener(
    listener: experimental.IdentityCertificateUpdateListener,
  ): void {
    this.identityListeners.delete(listener);
  }
}

/** Refuse a broken pair up front rather than have the server drop every handshake. */
function checkMaterial(m: TlsMaterial): void {
  inspectCertificate(m.caPem);
  const cert = new X509Certificate(m.certPem);
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(m.keyPem));
  } catch (err) {
    throw new SpillwayError(ErrorCode.CERT_INVALID, 'server key is not a PEM private key', {
      cause: err,
    });
  }
  if (!matches)
    throw new SpillwayError(
      ErrorCode.CERT_INVALID,
      'server key does not match the server certificate',
    );
}

/** One provider serves both roles: it is our CA and our identity. */
export function serverCredentials(provider: ReloadableCertificateProvider): grpc.ServerCredentials {
  return experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

export interface PeerIdentity {
  clusterId: string;
  serial: string;
  notAfter: Date;
}

export type AuthenticatedCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>;

/**
 * The caller's cluster, from the TLS peer certificate only. Throws UNAUTHENTICATED (or the
 * CERT_* code) when there is none, it is not ours, expired, revoked, or not a cluster's.
 */
export async function authenticate(
  call: AuthenticatedCall,
  caPem: string,
  isRevoked: (serial: string) => Promise<boolean>,
  now = new Date(),
): Promise<PeerIdentity> {
  const peer = call.getAuthContext().sslPeerCertificate;
  if (!peer?.raw) {
    throw new SpillwayError(
      ErrorCode.UNAUTHENTICATED,
      'this call needs a valid client certificate issued by the Spillway broker (join the cluster first)',
    );
  }
  const info = verifiedPeer(peer.raw, caPem);
  assertValidAt(info, now);
  if (await isRevoked(info.serial)) {
    throw new SpillwayError(ErrorCode.CERT_REVOKED, `certificate ${info.serial} has been revoked`);
  }
  const clusterId = info.identity?.name;
  if (clusterId === undefined) {
    throw new SpillwayError(ErrorCode.CERT_UNTRUSTED, 'certificate carries no cluster identity');
  }
  return { clusterId, serial: info.serial, notAfter: info.notAfter };
}

/**
 * Certificates that chained to the CA, by their DER bytes: checking the signature again on
 * every call of a long-lived channel costs more than the call. The validity window and
 * revocation are still checked on every call; a new CA starts an empty cache.
 */
const verified = { caPem: '', byDer: new Map<string, CertificateInfo>() };
const VERIFIED_LIMIT = 20_000;

function verifiedPeer(raw: Buffer, caPem: string): CertificateInfo {
  if (verified.caPem !== caPem) {
    verified.caPem = caPem;
    verified.byDer = new Map();
  }
  const key = raw.toString('base64');
  const hit = verified.byDer.get(key);
  if (hit) return hit;
  const pem = new X509Certificate(raw).toString();
  const info = verifyCertificate(pem, {
    caCertPem: caPem,
    requireKind: 'cluster',
    checkValidity: false,
  });
  if (verified.byDer.size >= VERIFIED_LIMIT) verified.byDer.clear();
  verified.byDer.set(key, info);
  return info;
}
