import * as grpc from '@grpc/grpc-js';
import { BrokerClient, CHANNEL_OPTIONS, joinCluster, loadSpillwayV1 } from '@spillway/api';
import {
  SpillwayError,
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  issueCertificate,
} from '@spillway/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  VIEWER_TOKEN,
  mintJoinToken,
  startBrokerProcess,
  type BrokerProcess,
} from './broker-process.js';

// The broker as an operator runs it (its own process, its own CA and SQLite file), attacked
// from outside: the gRPC port by clusters with the wrong credentials, the REST API by
// callers without the right token. The in-process integration tests cover the same checks
// piece by piece (packages/broker/src/grpc/server.int.test.ts, rest/rest.int.test.ts).

const FAILURE_LIMIT = 5;
let b: BrokerProcess;
const clients: { close(): unknown }[] = [];

beforeAll(async () => {
  b = await startBrokerProcess(['--auth-failure-rate-limit', String(FAILURE_LIMIT)]);
});

afterAll(async () => {
  for (const c of clients) await c.close();
  await b?.stop();
});

function client(id: { certPem: string; keyPem: string }): BrokerClient {
  const c = new BrokerClient({
    address: b.grpcAddress,
    caPem: b.caPem,
    ...id,
    callTimeoutMs: 10_000,
  });
  clients.push(c);
  return c;
}

async function refusal(p: Promise<unknown>): Promise<SpillwayError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SpillwayError) return err;
    throw err;
  }
  throw new Error('expected the broker to refuse');
}

const place = (origin: string) => ({
  pod: { origin_cluster: origin, namespace: 'ml', name: 'train-0', uid: `uid-${origin}` },
  resource_name: 'nvidia.com/gpu',
  gpus: 1,
});

/** A certificate the broker never issued through Join, signed by `ca`. */
function mint(
  ca: { certPem: string; keyPem: string },
  cluster: string,
  opts: { validSeconds?: number; now?: Date } = {},
): { certPem: string; keyPem: string } {
  const keys = generateKeyPair();
  const cert = issueCertificate({
    ca,
    csrPem: createCsr(keys.privateKeyPem, cluster),
    profile: 'client',
    identity: { kind: 'cluster', name: cluster },
    validSeconds: opts.validSeconds ?? 3600,
    ...(opts.now ? { now: opts.now } : {}),
  });
  return { certPem: cert.certPem, keyPem: keys.privateKeyPem };
}

describe('gRPC: only a valid certificate of the cluster itself is accepted', () => {
  it('refuses a caller without a client certificate on every call but Join', async () => {
    const v1 = loadSpillwayV1();
    const placement = new v1.PlacementService(
      b.grpcAddress,
      grpc.credentials.createSsl(Buffer.from(b.caPem)),
      CHANNEL_OPTIONS,
    );
    clients.push(placement);
    const code = await new Promise<grpc.status>((resolve) =>
      placement.Place(place('nobody'), (err) => resolve(err?.code ?? grpc.status.OK)),
    );
    expect(code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('refuses certificates from another CA, expired ones, and revoked ones', async () => {
    const token = await mintJoinToken(b, 'sec-a', 'origin');
    const a = await joinCluster({ brokerAddress: b.grpcAddress, caPem: b.caPem, token });
    const ok = await client(a).place(place('sec-a'));
    expect(ok.reason_code).toBe('NO_PEERING');

    const otherCa = createCertificateAuthority({ commonName: 'Not Spillway' });
    const forged = await refusal(client(mint(otherCa, 'sec-a')).place(place('sec-a')));
    expect(forged.code).toMatch(/UNAUTHENTICATED|UNAVAILABLE|CERT_UNTRUSTED/);

    const ownCa = { certPem: b.caPem, keyPem: b.caKeyPem };
    const expired = await refusal(
      client(
        mint(ownCa, 'sec-a', { validSeconds: 60, now: new Date(Date.now() - 7_200_000) }),
      ).place(place('sec-a')),
    );
    expect(expired.code).toMatch(/UNAUTHENTICATED|CERT_EXPIRED/);

    // Removing the cluster revokes its certificate, which then opens nothing.
    expect((await b.rest('DELETE', '/api/v1/clusters/sec-a')).status).toBe(204);
    const revoked = await refusal(client(a).place(place('sec-a')));
    expect(revoked.code).toBe('CERT_REVOKED');
  });

  it('lets no cluster speak for another', async () => {
    const a = await joinCluster({
      brokerAddress: b.grpcAddress,
      caPem: b.caPem,
      token: await mintJoinToken(b, 'sec-o', 'origin'),
    });
    await joinCluster({
      brokerAddress: b.grpcAddress,
      caPem: b.caPem,
      token: await mintJoinToken(b, 'sec-p', 'origin'),
    });
    await joinCluster({
      brokerAddress: b.grpcAddress,
      caPem: b.caPem,
      token: await mintJoinToken(b, 'sec-d', 'donor'),
    });
    expect(
      (await b.rest('POST', '/api/v1/peerings', { body: { origin: 'sec-p', donor: 'sec-d' } }))
        .status,
    ).toBe(201);
    const c = client(a);
    expect((await refusal(c.place(place('sec-p')))).code).toBe('PERMISSION_DENIED');
    const create = await refusal(
      c.createPod({
        donor_cluster: 'sec-d',
        pod: { origin_cluster: 'sec-p', namespace: 'ml', name: 'x', uid: 'u' },
        pod_json: '{"metadata":{"name":"x"},"spec":{"containers":[{"name":"m"}]}}',
      }),
    );
    expect(create.code).toBe('PERMISSION_DENIED');
    // Its own pods on a donor another origin is peered with: no peering, no relay.
    const mine = await refusal(
      c.createPod({
        donor_cluster: 'sec-d',
        pod: { origin_cluster: 'sec-o', namespace: 'ml', name: 'x', uid: 'u' },
        pod_json: '{"metadata":{"name":"x"},"spec":{"containers":[{"name":"m"}]}}',
      }),
    );
    expect(mine.code).toBe('NO_PEERING');
    expect((await refusal(c.listPods({ donor_cluster: 'sec-d' }))).code).toBe('NO_PEERING');
    expect((await b.rest('GET', '/api/v1/offloads')).body).toEqual({ offloads: [] });
  });

  it('accepts a join token once, and not with a wrong secret', async () => {
    const token = await mintJoinToken(b, 'sec-j', 'donor');
    const [id, secret] = token.split('.') as [string, string];
    const flipped = `${id}.${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;
    const guess = await refusal(
      joinCluster({ brokerAddress: b.grpcAddress, caPem: b.caPem, token: flipped }),
    );
    expect(guess.code).toBe('TOKEN_INVALID');
    const joined = await joinCluster({ brokerAddress: b.grpcAddress, caPem: b.caPem, token });
    expect(joined.clusterId).toBe('sec-j');
    const again = await refusal(
      joinCluster({ brokerAddress: b.grpcAddress, caPem: b.caPem, token }),
    );
    expect(again.code).toBe('TOKEN_INVALID');
    expect(again.message).toBe(guess.message);
  });
});

describe('REST: tokens and roles', () => {
  it('answers 401 without a token and 403 to a viewer on a mutating call', async () => {
    for (const [method, path] of [
      ['GET', '/api/v1/clusters'],
      ['POST', '/api/v1/join-tokens'],
      ['DELETE', '/api/v1/clusters/sec-o'],
    ] as const) {
      const res = await b.rest(method, path, { token: null });
      expect(res.status, `${method} ${path}`).toBe(401);
      expect(res.body).toMatchObject({ error: { code: 'UNAUTHENTICATED' } });
    }
    const before = await b.rest('GET', '/api/v1/clusters', { token: VIEWER_TOKEN });
    expect(before.status).toBe(200);
    for (const [method, path, body] of [
      ['POST', '/api/v1/join-tokens', { clusterId: 'evil', role: 'donor' }],
      ['POST', '/api/v1/peerings', { origin: 'sec-o', donor: 'sec-d' }],
      ['PATCH', '/api/v1/clusters/sec-d', { cordoned: true }],
      ['DELETE', '/api/v1/clusters/sec-d', undefined],
      ['POST', '/api/v1/api-tokens', { role: 'admin' }],
    ] as const) {
      const res = await b.rest(method, path, { token: VIEWER_TOKEN, body });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.body).toMatchObject({ error: { code: 'PERMISSION_DENIED' } });
    }
    expect((await b.rest('GET', '/api/v1/clusters', { token: VIEWER_TOKEN })).body).toEqual(
      before.body,
    );
  });

  it('refuses an oversized body with 413', async () => {
    const res = await b.rest('POST', '/api/v1/peerings', {
      body: JSON.stringify({ origin: 'x'.repeat(2 * 1024 * 1024) }),
    });
    expect(res.status).toBe(413);
    expect(res.body).toMatchObject({ error: { code: 'PAYLOAD_TOO_LARGE' } });
  });

  // Last: it leaves this client's address over its failure limit for the rest of the minute.
  it('rate-limits the failures of an address after repeated ones; a valid token still works', async () => {
    for (let i = 0; i < FAILURE_LIMIT; i++) {
      const res = await b.rest('GET', '/api/v1/clusters', { token: `guess-${i}` });
      expect(res.status).toBe(401);
    }
    const blocked = await b.rest('GET', '/api/v1/clusters', { token: 'guess-again' });
    expect(blocked.status).toBe(429);
    expect(blocked.body).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
    // Callers behind one address (a NAT, an ingress) are not locked out by one guesser.
    expect((await b.rest('GET', '/api/v1/clusters', { token: ADMIN_TOKEN })).status).toBe(200);
    const metrics = await b.rest('GET', '/metrics', { token: null });
    expect(String(metrics.body)).toMatch(
      /spillway_auth_failures_total\{reason="invalid_token"\} 6/,
    );
  });
});
