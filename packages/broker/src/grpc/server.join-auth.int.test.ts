// The broker's gRPC layer: Join and authentication. Every identity is obtained through Join, as
// clusters do. Shared setup: test-support/grpc/suite.ts.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { beforeAll, describe, expect, it } from 'vitest';
import { joinCluster, type JoinedIdentity } from '@spillway/api';
import {
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  inspectCertificate,
  issueCertificate,
  verifyCertificate,
} from '@spillway/common';
import { SERVER_NAME, joinAs, mtls, serverOnlyTls } from '../../test-support/grpc/harness.js';
import {
  HEARTBEAT_MS,
  TIMEOUT_MS,
  eventually,
  placeReq,
  rejection,
  serverSuite,
  unaryStatus,
} from '../../test-support/grpc/suite.js';
const bed = serverSuite();
const { client, raw, probe, hello } = bed;

describe('Join', () => {
  it('issues a certificate whose identity is the token’s cluster; a token works once', async () => {
    const { token } = await bed.b.core.createJoinToken({ clusterId: 'join-a', role: 'both' });
    const keys = generateKeyPair();
    const id = await joinCluster({
      brokerAddress: bed.b.address,
      caPem: bed.b.ca.certPem,
      token,
      privateKeyPem: keys.privateKeyPem,
      serverName: SERVER_NAME,
    });
    expect(id.clusterId).toBe('join-a');
    expect(id.keyPem).toBe(keys.privateKeyPem);
    expect(id.caPem).toBe(bed.b.ca.certPem);
    const info = verifyCertificate(id.certPem, {
      caCertPem: bed.b.ca.certPem,
      requireKind: 'cluster',
    });
    expect(info.identity).toEqual({ kind: 'cluster', name: 'join-a' });
    expect(new X509Certificate(id.certPem).checkPrivateKey(createPrivateKey(id.keyPem))).toBe(true);

    const again = await rejection(
      joinCluster({
        brokerAddress: bed.b.address,
        caPem: bed.b.ca.certPem,
        token,
        serverName: SERVER_NAME,
      }),
    );
    expect(again.code).toBe('TOKEN_INVALID');
  });

  it('refuses a malformed CSR without burning the token', async () => {
    const { token } = await bed.b.core.createJoinToken({ clusterId: 'join-b', role: 'both' });
    const r = raw(serverOnlyTls(bed.b.ca.certPem));
    const st = await unaryStatus((req, cb) => r.cluster.Join(req, cb), {
      token,
      csr_pem: 'not a csr',
    });
    expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(st.field).toBe('csr_pem');
    const id = await joinCluster({
      brokerAddress: bed.b.address,
      caPem: bed.b.ca.certPem,
      token,
      serverName: SERVER_NAME,
    });
    expect(id.clusterId).toBe('join-b');
  });

  it('generates the key locally when none is given, and renews to a new certificate', async () => {
    const id = await joinAs(bed.b, 'join-c');
    expect(id.keyPem).toContain('PRIVATE KEY');
    const c = client(id);
    const renewed = await c.renew();
    expect(renewed.keyPem).not.toBe(id.keyPem);
    const before = inspectCertificate(id.certPem);
    const after = inspectCertificate(renewed.certPem);
    expect(after.identity).toEqual({ kind: 'cluster', name: 'join-c' });
    expect(after.serial).not.toBe(before.serial);
    // The client switched to the renewed identity: a call still authenticates.
    const res = await c.place(placeReq('join-c'));
    expect(res.reason_code).toBe('NO_PEERING');
  });
});

describe('authentication', () => {
  let origin: JoinedIdentity;
  beforeAll(async () => {
    origin = await joinAs(bed.b, 'auth-o');
  });

  it('welcomes a joined cluster under the identity of its certificate', async () => {
    const c = client(origin);
    let peerings = 0;
    const s = c.connect(
      'agent',
      { onPeerings: () => peerings++ },
      { heartbeatIntervalMs: HEARTBEAT_MS },
    );
    await s.waitConnected(5_000);
    expect(s.lastWelcome?.cluster_id).toBe('auth-o');
    expect(s.lastWelcome?.broker_id).toBe(bed.b.core.brokerId);
    expect(Number(s.lastWelcome?.heartbeat_timeout_ms)).toBe(TIMEOUT_MS);
    await eventually(() => expect(peerings).toBeGreaterThan(0));
    const view = await bed.b.core.getCluster('auth-o');
    expect(view.connections.agent?.brokerId).toBe(bed.b.core.brokerId);
    await s.close();
    await eventually(async () =>
      expect((await bed.b.core.getCluster('auth-o')).connections.agent).toBeUndefined(),
    );
  });

  it('allows only Join without a client certificate, on the same port', async () => {
    const r = raw(serverOnlyTls(bed.b.ca.certPem));
    const p = probe(r);
    p.send({ hello: { component: 'COMPONENT_AGENT' } });
    const end = await p.end();
    expect(end.code).toBe(grpc.status.UNAUTHENTICATED);
    const place = await unaryStatus((req, cb) => r.placement.Place(req, cb), placeReq('auth-o'));
    expect(place.code).toBe(grpc.status.UNAUTHENTICATED);
    const renew = await unaryStatus((req, cb) => r.cluster.Renew(req, cb), { csr_pem: 'x' });
    expect(renew.code).toBe(grpc.status.UNAUTHENTICATED);
    const list = await unaryStatus((req, cb) => r.pod.ListPods(req, cb), {
      donor_cluster: 'auth-o',
    });
    expect(list.code).toBe(grpc.status.UNAUTHENTICATED);
    // Same channel, same port: Join goes through.
    const { token } = await bed.b.core.createJoinToken({ clusterId: 'auth-j', role: 'both' });
    const csr = createCsr(generateKeyPair().privateKeyPem, 'x');
    const join = await unaryStatus((req, cb) => r.cluster.Join(req, cb), { token, csr_pem: csr });
    expect(join.code).toBe(grpc.status.OK);
  });

  it('refuses a certificate from another CA, even one naming a joined cluster', async () => {
    const other = createCertificateAuthority({ commonName: 'Not Spillway' });
    const keys = generateKeyPair();
    const forged = issueCertificate({
      ca: other,
      csrPem: createCsr(keys.privateKeyPem, 'x'),
      profile: 'client',
      identity: { kind: 'cluster', name: 'auth-o' },
      validSeconds: 3600,
    });
    const r = raw(mtls(bed.b.ca.certPem, { certPem: forged.certPem, keyPem: keys.privateKeyPem }));
    const p = probe(r);
    p.send({ hello: { component: 'COMPONENT_AGENT' } });
    expect((await p.end()).code).toBe(grpc.status.UNAUTHENTICATED);
    const place = await unaryStatus((req, cb) => r.placement.Place(req, cb), placeReq('auth-o'));
    expect(place.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('refuses an expired certificate from the broker’s own CA', async () => {
    const keys = generateKeyPair();
    const expired = issueCertificate({
      ca: bed.b.ca,
      csrPem: createCsr(keys.privateKeyPem, 'x'),
      profile: 'client',
      identity: { kind: 'cluster', name: 'auth-o' },
      validSeconds: 60,
      now: new Date(Date.now() - 3_600_000),
    });
    const r = raw(mtls(bed.b.ca.certPem, { certPem: expired.certPem, keyPem: keys.privateKeyPem }));
    const place = await unaryStatus((req, cb) => r.placement.Place(req, cb), placeReq('auth-o'));
    expect(place.code).toBe(grpc.status.UNAUTHENTICATED);
    const p = probe(r);
    p.send({ hello: { component: 'COMPONENT_AGENT' } });
    expect((await p.end()).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('refuses a CA-signed certificate that carries no cluster identity', async () => {
    const keys = generateKeyPair();
    const admin = issueCertificate({
      ca: bed.b.ca,
      csrPem: createCsr(keys.privateKeyPem, 'x'),
      profile: 'client',
      identity: { kind: 'admin', name: 'ops' },
      validSeconds: 3600,
    });
    const r = raw(mtls(bed.b.ca.certPem, { certPem: admin.certPem, keyPem: keys.privateKeyPem }));
    const place = await unaryStatus((req, cb) => r.placement.Place(req, cb), placeReq('ops'));
    expect(place.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(place.spillwayCode).toBe('CERT_UNTRUSTED');
  });

  it('ends the live stream of a removed cluster and refuses its certificate afterwards', async () => {
    const id = await joinAs(bed.b, 'auth-r');
    const r = raw(mtls(bed.b.ca.certPem, id));
    const p = probe(r);
    await hello(p, 'COMPONENT_AGENT');
    await bed.b.core.removeCluster('auth-r');
    const end = await p.end();
    expect(end.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(end.spillwayCode).toBe('CERT_REVOKED');
    const place = await unaryStatus((req, cb) => r.placement.Place(req, cb), placeReq('auth-r'));
    expect(place.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(place.spillwayCode).toBe('CERT_REVOKED');
  });
});
