import forge from 'node-forge';
import { beforeAll, describe, expect, it } from 'vitest';
import { isSpillwayError } from './errors.js';
import {
  RevocationList,
  assertValidAt,
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  inspectCertificate,
  issueCertificate,
  issueKeyAndCertificate,
  verifyCertificate,
  type CertificateAuthority,
} from './pki.js';

let ca: CertificateAuthority;
let otherCa: CertificateAuthority;

beforeAll(() => {
  ca = createCertificateAuthority({ commonName: 'Test CA' });
  otherCa = createCertificateAuthority({ commonName: 'Other CA' });
});

function clientCert(id: string, validSeconds = 3600, now?: Date) {
  const keys = generateKeyPair();
  const csrPem = createCsr(keys.privateKeyPem, 'whatever-the-client-says');
  return issueCertificate({
    ca,
    csrPem,
    profile: 'client',
    identity: { kind: 'cluster', name: id },
    validSeconds,
    ...(now ? { now } : {}),
  });
}

function expectCode(fn: () => unknown, code: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(isSpillwayError(err) ? err.code : err).toBe(code);
}

describe('PKI', () => {
  it('issues a client certificate carrying the cluster identity chosen by the issuer', () => {
    const cert = clientCert('gpu-east');
    const info = verifyCertificate(cert.certPem, { caCertPem: ca.certPem });
    expect(info.identity).toEqual({ kind: 'cluster', name: 'gpu-east' });
    expect(info.commonName).toBe('cluster:gpu-east');
    expect(info.serial).toBe(cert.serial.replace(/^0+/, ''));
    const x = forge.pki.certificateFromPem(cert.certPem);
    const eku = x.getExtension('extKeyUsage') as { clientAuth?: boolean; serverAuth?: boolean };
    expect(eku.clientAuth).toBe(true);
    expect(eku.serverAuth).toBeFalsy();
    expect((x.getExtension('basicConstraints') as { cA: boolean }).cA).toBe(false);
  });

  it('uses random serials', () => {
    const serials = new Set(Array.from({ length: 5 }, () => clientCert('a').serial));
    expect(serials.size).toBe(5);
    for (const s of serials) expect(s).toMatch(/^[0-7][0-9a-f]{31}$/);
  });

  it('refuses a certificate from another CA', () => {
    const keys = generateKeyPair();
    const foreign = issueCertificate({
      ca: otherCa,
      csrPem: createCsr(keys.privateKeyPem, 'x'),
      profile: 'client',
      identity: { kind: 'cluster', name: 'gpu-east' },
      validSeconds: 3600,
    });
    expectCode(
      () => verifyCertificate(foreign.certPem, { caCertPem: ca.certPem }),
      'CERT_UNTRUSTED',
    );
  });

  it('refuses an expired and a not-yet-valid certificate', () => {
    const past = clientCert('old', 60, new Date(Date.now() - 3_600_000));
    expectCode(() => verifyCertificate(past.certPem, { caCertPem: ca.certPem }), 'CERT_EXPIRED');
    const future = clientCert('new', 60, new Date(Date.now() + 3_600_000));
    expectCode(
      () => verifyCertificate(future.certPem, { caCertPem: ca.certPem }),
      'CERT_NOT_YET_VALID',
    );
    // Checked apart (a cached chain check), validity still decides at each use.
    const info = verifyCertificate(past.certPem, { caCertPem: ca.certPem, checkValidity: false });
    expectCode(() => assertValidAt(info, new Date()), 'CERT_EXPIRED');
    expect(() => assertValidAt(info, new Date(info.notAfter.getTime() - 1000))).not.toThrow();
    const foreign = issueCertificate({
      ca: otherCa,
      csrPem: createCsr(generateKeyPair().privateKeyPem, 'x'),
      profile: 'client',
      identity: { kind: 'cluster', name: 'gpu-east' },
      validSeconds: 3600,
    });
    expectCode(
      () => verifyCertificate(foreign.certPem, { caCertPem: ca.certPem, checkValidity: false }),
      'CERT_UNTRUSTED',
    );
  });

  it('refuses a tampered certificate', () => {
    const good = clientCert('gpu-east', 60);
    const x = forge.pki.certificateFromPem(good.certPem);
    // Extend its lifetime and claim another cluster without re-signing.
    x.validity.notAfter = new Date(Date.now() + 10 * 365 * 86_400_000);
    x.setExtensions([
      { name: 'subjectAltName', altNames: [{ type: 6, value: 'spillway://cluster/gpu-west' }] },
    ]);
    // forge caches the parsed TBS bytes; drop them so the edit is really encoded.
    delete (x as { tbsCertificate?: unknown }).tbsCertificate;
    const tampered = forge.pki.certificateToPem(x);
    expect(inspectCertificate(tampered).identity?.name).toBe('gpu-west');
    expectCode(() => verifyCertificate(tampered, { caCertPem: ca.certPem }), 'CERT_UNTRUSTED');
  });

  it('refuses a revoked certificate', () => {
    const cert = clientCert('gpu-east');
    const crl = new RevocationList();
    expect(
      verifyCertificate(cert.certPem, { caCertPem: ca.certPem, isRevoked: crl.isRevoked }).identity
        ?.name,
    ).toBe('gpu-east');
    crl.revoke(cert.serial.toUpperCase(), 'cluster removed', 'cluster:gpu-east');
    expectCode(
      () => verifyCertificate(cert.certPem, { caCertPem: ca.certPem, isRevoked: crl.isRevoked }),
      'CERT_REVOKED',
    );
    expect(new RevocationList(crl.list()).isRevoked(cert.serial)).toBe(true);
  });

  it('refuses a CSR whose signature does not verify (no proof of key possession)', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    const csr = forge.pki.certificationRequestFromPem(createCsr(a.privateKeyPem, 'x'));
    csr.publicKey = forge.pki.publicKeyFromPem(b.publicKeyPem); // swap in someone else's key
    delete (csr as { certificationRequestInfo?: unknown }).certificationRequestInfo;
    const forged = forge.pki.certificationRequestToPem(csr);
    expectCode(
      () =>
        issueCertificate({
          ca,
          csrPem: forged,
          profile: 'client',
          identity: { kind: 'cluster', name: 'x' },
          validSeconds: 60,
        }),
      'CERT_INVALID',
    );
    expectCode(
      () => issueCertificate({ ca, csrPem: 'not a csr', profile: 'client', validSeconds: 60 }),
      'CERT_INVALID',
    );
  });

  it('requires the expected identity kind when asked', () => {
    const cert = clientCert('gpu-east');
    expectCode(
      () => verifyCertificate(cert.certPem, { caCertPem: ca.certPem, requireKind: 'admin' }),
      'CERT_UNTRUSTED',
    );
  });

  it('issues a server certificate with DNS and IP SANs', () => {
    const server = issueKeyAndCertificate({
      ca,
      profile: 'server',
      identity: { kind: 'broker', name: 'broker' },
      commonName: 'spillway-broker',
      dnsNames: ['localhost', 'broker.spillway.svc'],
      ipAddresses: ['127.0.0.1'],
      validSeconds: 3600,
    });
    const info = inspectCertificate(server.certPem);
    expect(info.identity).toEqual({ kind: 'broker', name: 'broker' });
    expect(server.keyPem).toContain('PRIVATE KEY');
    const x = forge.pki.certificateFromPem(server.certPem);
    const san = x.getExtension('subjectAltName') as {
      altNames: { type: number; value?: string; ip?: string }[];
    };
    expect(san.altNames.map((n) => n.ip ?? n.value)).toEqual(
      expect.arrayContaining(['localhost', 'broker.spillway.svc', '127.0.0.1']),
    );
  });
});
