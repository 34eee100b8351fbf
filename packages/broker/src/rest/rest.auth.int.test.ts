// The REST API on a real SQLite store and the real core: auth limits, TLS client certificates, readiness.
// Shared setup: test-support/rest/harness.ts.
import { randomUUID } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createCertificateAuthority, issueKeyAndCertificate, silentLogger } from '@spillway/common';
import { Core } from '../core/broker-core.js';
import { Metrics } from '../metrics.js';
import { RedisStore } from '../store/redis.js';
import type { Store } from '../store/store.js';
import { buildRestApp } from './app.js';
import { RestAuth } from './auth.js';
import {
  ADMIN,
  admin,
  close,
  harness,
  testCa,
  type Harness,
} from '../../test-support/rest/harness.js';
describe('REST auth limits and certificates', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness({ failureLimit: 3 });
    return () => close(h);
  });

  it('answers 429 to further failures from an IP over its limit; a valid token still works', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await h.app.inject({
        url: '/api/v1/clusters',
        headers: { authorization: 'Bearer guess' },
      });
      expect(res.statusCode).toBe(401);
    }
    const blocked = await h.app.inject({
      url: '/api/v1/clusters',
      headers: { authorization: 'Bearer guess' },
    });
    expect(blocked.statusCode).toBe(429);
    expect((await h.app.inject({ url: '/api/v1/clusters', headers: admin })).statusCode).toBe(200);
    expect(blocked.json()).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    // Another client is not punished for it.
    const other = await h.app.inject({
      url: '/api/v1/clusters',
      headers: admin,
      remoteAddress: '10.9.9.9',
    });
    expect(other.statusCode).toBe(200);
    expect(await h.metrics.render()).toContain(
      'spillway_auth_failures_total{reason="invalid_token"} 4',
    );
  });
});

describe('REST over TLS with admin client certificates', () => {
  let h: Harness;
  let port: number;
  beforeAll(async () => {
    h = await harness({ tls: true });
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    port = (h.app.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await close(h);
  });

  function get(
    path: string,
    opts: { cert?: string; key?: string; headers?: Record<string, string> } = {},
  ): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          path,
          method: 'POST',
          ca: testCa().certPem,
          ...(opts.cert ? { cert: opts.cert, key: opts.key } : {}),
          headers: { 'content-type': 'application/json', ...(opts.headers ?? {}) },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ clusterId: 'tls-1', role: 'donor' }));
    });
  }

  it('lets an admin certificate act as admin and refuses a cluster certificate', async () => {
    const adminCert = issueKeyAndCertificate({
      ca: testCa(),
      profile: 'client',
      identity: { kind: 'admin', name: 'alice' },
      validSeconds: 3600,
    });
    expect(
      await get('/api/v1/join-tokens', { cert: adminCert.certPem, key: adminCert.keyPem }),
    ).toBe(201);

    const clusterCert = issueKeyAndCertificate({
      ca: testCa(),
      profile: 'client',
      identity: { kind: 'cluster', name: 'donor-b' },
      validSeconds: 3600,
    });
    expect(
      await get('/api/v1/join-tokens', { cert: clusterCert.certPem, key: clusterCert.keyPem }),
    ).toBe(401);

    const foreign = createCertificateAuthority();
    const forged = issueKeyAndCertificate({
      ca: foreign,
      profile: 'client',
      identity: { kind: 'admin', name: 'mallory' },
      validSeconds: 3600,
    });
    expect(await get('/api/v1/join-tokens', { cert: forged.certPem, key: forged.keyPem })).toBe(
      401,
    );
    // Tokens still work over TLS.
    expect(await get('/api/v1/join-tokens', { headers: admin })).toBe(201);
    expect(await h.store.listJoinTokens()).toHaveLength(2);
  });
});

describe('readiness follows the store', () => {
  async function appOn(store: Store): Promise<FastifyInstance> {
    const logger = silentLogger();
    const metrics = new Metrics();
    metrics.bindStore(store);
    const core = new Core({ store, ca: testCa(), logger, brokerId: 'ready-test' });
    const auth = new RestAuth({ store, adminToken: ADMIN, failureLimit: 10 });
    const app = buildRestApp({ core, store, logger, auth, metrics });
    await app.ready();
    return app;
  }

  it('answers 503 with a reason when Redis cannot be reached, 200 when it can', async () => {
    const down = new RedisStore('redis://127.0.0.1:1', { readyTimeoutMs: 300 });
    const up = new RedisStore('redis://127.0.0.1:6379', {
      prefix: `spillway-test:${randomUUID()}:`,
    });
    const appDown = await appOn(down);
    const appUp = await appOn(up);
    try {
      const res = await appDown.inject({ url: '/readyz' });
      expect(res.statusCode).toBe(503);
      const body = res.json<{ status: string; store: string; reason: string }>();
      expect([body.status, body.store]).toEqual(['unavailable', 'redis']);
      expect(body.reason).not.toBe('');
      // The process itself is fine; only readiness fails.
      expect((await appDown.inject({ url: '/healthz' })).statusCode).toBe(200);
      // Scrapes still work, counting the store failure instead of failing.
      const metrics = await appDown.inject({ url: '/metrics' });
      expect(metrics.statusCode).toBe(200);
      expect(metrics.body).toMatch(/spillway_metrics_store_errors_total [1-9]/);
      // A request that needs the store says so, without a stack.
      const list = await appDown.inject({ url: '/api/v1/clusters', headers: admin });
      expect(list.statusCode).toBe(503);
      expect(list.json()).toMatchObject({ error: { code: 'STORE_UNAVAILABLE' } });

      expect((await appUp.inject({ url: '/readyz' })).json()).toEqual({
        status: 'ready',
        store: 'redis',
      });
    } finally {
      await appDown.close();
      await appUp.close();
      await down.close();
      await up.close();
    }
  });
});
