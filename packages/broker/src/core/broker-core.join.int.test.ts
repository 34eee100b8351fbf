// The Core on both stores: joining, renewal, removal and revocation. Shared setup: test-support/core/harness.ts.
import { describe, expect, it } from 'vitest';
import { inspectCertificate, verifyCertificate } from '@spillway/common';
import { caught, describeCore } from '../../test-support/core/harness.js';
describeCore((s) => {
  const { stores, time, newCore, peeredLab, joinAs } = s;
  describe('join', () => {
    it('exchanges a token once for a certificate whose identity the broker chose', async () => {
      const core = await newCore();
      const issued = await core.createJoinToken({ clusterId: 'gpu-east', role: 'donor' });
      expect(issued.token).toMatch(/^[a-z0-9]{16}\.[A-Za-z0-9_-]{43}$/);
      expect(issued.token.startsWith(`${issued.id}.`)).toBe(true);

      const res = await core.join(issued.token, s.csr);
      expect(res.clusterId).toBe('gpu-east');
      expect(res.caPem).toBe(s.ca.certPem);
      const info = verifyCertificate(res.certificatePem, { caCertPem: s.ca.certPem });
      expect(info.identity).toEqual({ kind: 'cluster', name: 'gpu-east' });
      expect(info.commonName).toBe('cluster:gpu-east');
      expect(info.commonName).not.toContain('impostor');

      const record = await core.getClusterRecord('gpu-east');
      expect(record).toMatchObject({ id: 'gpu-east', role: 'donor', certSerial: info.serial });
      expect(record?.certNotAfter).toBe(res.notAfter);
      // 30 days by default.
      expect(Date.parse(res.notAfter) - Date.now()).toBeGreaterThan(29 * 86_400_000);

      // The secret itself is never stored.
      const stored = await stores[0]!.listJoinTokens();
      const secret = issued.token.split('.')[1]!;
      expect(JSON.stringify(stored)).not.toContain(secret);

      const again = await caught(core.join(issued.token, s.csr));
      expect(again.code).toBe('TOKEN_INVALID');
    });

    it('refuses expired, unknown, tampered and malformed tokens alike', async () => {
      const core = await newCore();
      const short = await core.createJoinToken({ clusterId: 'c1', role: 'donor', ttlMs: 1000 });
      const good = await core.createJoinToken({ clusterId: 'c2', role: 'donor' });
      time.advance(1001);
      const tampered = `${good.id}.${'A'.repeat(43)}`;
      for (const token of [
        short.token,
        tampered,
        `deadbeefdeadbeef.${'B'.repeat(43)}`,
        'nonsense',
        '',
      ]) {
        const err = await caught(core.join(token, s.csr));
        expect(err.code).toBe('TOKEN_INVALID');
        expect(err.field).toBe('token');
      }
      // None of it burnt the good token.
      expect((await core.join(good.token, s.csr)).clusterId).toBe('c2');
      expect(await core.getClusterRecord('c1')).toBeUndefined();
    });

    it('a bad CSR does not use up the token', async () => {
      const core = await newCore();
      const { token } = await core.createJoinToken({ clusterId: 'c1', role: 'both' });
      const err = await caught(core.join(token, 'not a s.csr'));
      expect(err.code).toBe('CERT_INVALID');
      expect(err.field).toBe('csr_pem');
      expect(await core.getClusterRecord('c1')).toBeUndefined();
      expect((await core.join(token, s.csr)).clusterId).toBe('c1');
    });

    it('validates token input naming the field', async () => {
      const core = await newCore();
      for (const [input, field] of [
        [{ clusterId: 'Bad_ID', role: 'donor' }, 'clusterId'],
        [{ clusterId: 'ok', role: 'lender' }, 'role'],
        [{ clusterId: 'ok', role: 'donor', ttlMs: 25 * 3_600_000 }, 'ttlMs'],
        [{ clusterId: 'ok', role: 'donor', ttlMs: 0 }, 'ttlMs'],
      ] as const) {
        const err = await caught(core.createJoinToken(input as never));
        expect([err.code, err.field]).toEqual(['INVALID_ARGUMENT', field]);
      }
      expect(await stores[0]!.listJoinTokens()).toEqual([]);
    });

    it('re-joining rotates the certificate, revokes the old one and keeps policy; renew needs a live cluster', async () => {
      const core = await newCore();
      const first = inspectCertificate(await joinAs(core, 'c1', 'donor'));
      await core.patchCluster('c1', { policy: { maxGpus: 3 } });
      const second = inspectCertificate(await joinAs(core, 'c1', 'both'));
      expect(second.serial).not.toBe(first.serial);
      // A new identity for the same cluster: the old certificate stops working.
      expect(await core.isRevoked(first.serial)).toBe(true);
      expect(await core.isRevoked(second.serial)).toBe(false);
      const rec = await core.getClusterRecord('c1');
      expect(rec).toMatchObject({ role: 'both', certSerial: second.serial });
      expect(rec?.policy.maxGpus).toBe(3);

      const renewed = await core.renew('c1', s.csr);
      const third = verifyCertificate(renewed.certificatePem, { caCertPem: s.ca.certPem });
      expect(third.identity).toEqual({ kind: 'cluster', name: 'c1' });
      expect((await core.getClusterRecord('c1'))?.certSerial).toBe(third.serial);

      expect((await caught(core.renew('ghost', s.csr))).code).toBe('NOT_FOUND');
      await core.removeCluster('c1');
      expect((await caught(core.renew('c1', s.csr))).code).toBe('PERMISSION_DENIED');
    });
  });

  describe('removal and revocation', () => {
    it('revokes the certificate, drops peerings and inventory, and other replicas converge', async () => {
      const a = await newCore();
      const b = await newCore({ revocationRefreshMs: 50 });
      await peeredLab(a);
      const serial = (await a.getClusterRecord('donor-a'))!.certSerial!;
      expect(await b.isRevoked(serial)).toBe(false);
      const revoked: string[] = [];
      const changed: string[][] = [];
      a.events.on('clusterRevoked', (id) => revoked.push(id));
      a.events.on('peeringsChanged', (ids) => changed.push(ids));

      await a.removeCluster('donor-a');
      expect(revoked).toEqual(['donor-a']);
      expect(changed).toContainEqual(['lab']);
      expect(await a.isRevoked(serial)).toBe(true);
      await new Promise((r) => setTimeout(r, 60));
      expect(await b.isRevoked(serial)).toBe(true);
      expect(await a.listPeerings()).toEqual([]);
      expect(await a.getInventory('donor-a')).toBeUndefined();
      const view = (await a.listClusters()).find((c) => c.id === 'donor-a');
      expect(view?.state).toBe('Revoked');
      expect((await caught(a.connected('donor-a', 'agent'))).code).toBe('PERMISSION_DENIED');
      expect((await caught(a.removeCluster('ghost'))).code).toBe('NOT_FOUND');
    });
  });
});
