import { describe, expect, it } from 'vitest';
import {
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  issueCertificate,
} from '@spillway/common';
import { identityFromSecret, identitySecret, needsRenewal } from './credentials.js';

describe('identity Secret', () => {
  const ca = createCertificateAuthority();
  const keys = generateKeyPair();
  const now = Date.now();
  const cert = issueCertificate({
    ca,
    csrPem: createCsr(keys.privateKeyPem, 'x'),
    profile: 'client',
    identity: { kind: 'cluster', name: 'donor-a' },
    validSeconds: 3000,
    now: new Date(now),
  });

  it('round-trips and reads the cluster ID from the certificate', () => {
    const s = identitySecret('spillway-identity', 'spillway-system', {
      clusterId: 'donor-a',
      keyPem: keys.privateKeyPem,
      certPem: cert.certPem,
      caPem: ca.certPem,
      notAfter: cert.notAfter,
    });
    expect(s.type).toBe('kubernetes.io/tls');
    const back = identityFromSecret(s);
    expect(back?.clusterId).toBe('donor-a');
    expect(back?.keyPem).toBe(keys.privateKeyPem);
    expect(identityFromSecret({ data: {} })).toBeUndefined();
  });

  it('renews when a third of the lifetime is left', () => {
    expect(needsRenewal(cert.certPem, new Date(now))).toBe(false);
    expect(needsRenewal(cert.certPem, new Date(now + 2_500_000))).toBe(true);
  });
});
