// The REST API on a real SQLite store and the real core: what it refuses, and what it serves over a socket.
// Shared setup: test-support/rest/harness.ts.
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  ADMIN,
  admin,
  close,
  gpuNode,
  harness,
  joinCluster,
  seededApi,
  viewer,
} from '../../test-support/rest/harness.js';
describe('REST API on a real SQLite store and the real core: refusals', () => {
  const api = seededApi();
  const { inject, snapshot } = api;

  it('refuses requests without a valid token with 401', async () => {
    const before = await snapshot();
    for (const [method, url] of [
      ['GET', '/api/v1/clusters'],
      ['GET', '/api/v1/capacity'],
      ['POST', '/api/v1/peerings'],
      ['DELETE', '/api/v1/clusters/donor-b'],
    ] as const) {
      const none = await inject(method, url, {});
      expect(none.statusCode).toBe(401);
      expect(none.json()).toMatchObject({
        error: { code: 'UNAUTHENTICATED', field: 'Authorization' },
      });
      const wrong = await inject(method, url, { authorization: 'Bearer not-the-token' });
      expect(wrong.statusCode).toBe(401);
      const scheme = await inject(method, url, { authorization: `Basic ${ADMIN}` });
      expect(scheme.statusCode).toBe(401);
    }
    expect(await snapshot()).toEqual(before);
  });

  it('lets a viewer read but not change anything (403)', async () => {
    const before = await snapshot();
    const attempts: [string, string, unknown][] = [
      ['POST', '/api/v1/peerings', { origin: 'origin-a', donor: 'donor-c' }],
      ['DELETE', '/api/v1/peerings/origin-a/donor-b', undefined],
      ['PATCH', '/api/v1/clusters/donor-b', { cordoned: true }],
      ['DELETE', '/api/v1/clusters/donor-b', undefined],
      ['POST', '/api/v1/join-tokens', { clusterId: 'x', role: 'donor' }],
      ['POST', '/api/v1/api-tokens', { role: 'admin' }],
      ['GET', '/api/v1/api-tokens', undefined],
    ];
    for (const [method, url, body] of attempts) {
      const res = await inject(method as 'POST', url, viewer, body);
      expect(res.statusCode, `${method} ${url}`).toBe(403);
      expect(res.json()).toMatchObject({ error: { code: 'PERMISSION_DENIED' } });
    }
    expect(await snapshot()).toEqual(before);
  });

  it('refuses bad input with 400 naming the field and changes nothing', async () => {
    const before = await snapshot();
    const cases: [string, string, unknown, string][] = [
      ['POST', '/api/v1/peerings', { origin: 'origin-a', donor: 'donor-c', maxGpu: 3 }, 'maxGpu'],
      ['POST', '/api/v1/peerings', { origin: 'Origin_A', donor: 'donor-c' }, 'origin'],
      ['POST', '/api/v1/peerings', { donor: 'donor-c' }, 'origin'],
      ['PATCH', '/api/v1/clusters/donor-b', { cordon: true }, 'cordon'],
      ['PATCH', '/api/v1/clusters/donor-b', {}, 'body'],
      ['PATCH', '/api/v1/clusters/donor-b', { maxGpus: -1 }, 'maxGpus'],
      ['PATCH', '/api/v1/clusters/donor-b', { nodeSelector: { a: 5 } }, 'nodeSelector.a'],
      ['POST', '/api/v1/join-tokens', { clusterId: 'x', role: 'king' }, 'role'],
      ['POST', '/api/v1/join-tokens', { clusterId: 'x', role: 'donor', ttl: '30d' }, 'ttl'],
      ['POST', '/api/v1/join-tokens', { clusterId: 'x', role: 'donor', ttl: '48h' }, 'ttl'],
      ['POST', '/api/v1/placements:simulate', { origin: 'origin-a', gpus: -1 }, 'gpus'],
      ['POST', '/api/v1/placements:simulate', { origin: 'origin-a', gpus: 0 }, 'gpus'],
      ['POST', '/api/v1/placements:simulate', { origin: 'origin-a', gpus: 1e9 }, 'gpus'],
      ['POST', '/api/v1/placements:simulate', { origin: 'origin-a', gpus: 1.5 }, 'gpus'],
      ['POST', '/api/v1/placements:simulate', { origin: 'origin-a', gpus: '4' }, 'gpus'],
      ['POST', '/api/v1/placements:simulate', { origin: 'origin-a' }, 'gpus'],
      [
        'POST',
        '/api/v1/placements:simulate',
        { origin: 'origin-a', gpus: 1, members: [{ gpus: 1 }] },
        'gpus',
      ],
      [
        'POST',
        '/api/v1/placements:simulate',
        { origin: 'origin-a', gpus: 1, requirements: [{ key: 'a', operator: 'Near' }] },
        'requirements[0].operator',
      ],
      ['GET', '/api/v1/capacity?gpu=A100', undefined, 'gpu'],
      ['GET', '/api/v1/capacity?minGpuMemoryMiB=lots', undefined, 'minGpuMemoryMiB'],
      ['GET', '/api/v1/offloads?state=running', undefined, 'state'],
      ['GET', '/api/v1/clusters/NOT_AN_ID', undefined, 'id'],
    ];
    for (const [method, url, body, field] of cases) {
      const res = await inject(method as 'POST', url, admin, body);
      expect(res.statusCode, `${method} ${url} ${JSON.stringify(body)}`).toBe(400);
      const err = res.json<{ error: { code: string; field: string; message: string } }>().error;
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.field, JSON.stringify(err)).toBe(field);
      expect(err.message).toContain(field === 'body' ? 'body' : field.split(/[.[]/)[0]);
      expect(res.body).not.toMatch(/ at .*\.ts:\d+/);
    }
    const malformed = await inject('POST', '/api/v1/peerings', admin, '{"origin": "origin-a",');
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json()).toEqual({
      error: { code: 'INVALID_ARGUMENT', message: 'body is not valid JSON', field: 'body' },
    });
    const huge = await inject(
      'POST',
      '/api/v1/peerings',
      admin,
      JSON.stringify({ origin: 'x'.repeat(2 * 1024 * 1024) }),
    );
    expect(huge.statusCode).toBe(413);
    expect(huge.json()).toMatchObject({ error: { code: 'PAYLOAD_TOO_LARGE' } });
    expect(await snapshot()).toEqual(before);
  });

  it('answers 404 for unknown clusters and peerings and changes nothing', async () => {
    const before = await snapshot();
    for (const [method, url, body] of [
      ['GET', '/api/v1/clusters/nobody', undefined],
      ['PATCH', '/api/v1/clusters/nobody', { cordoned: true }],
      ['DELETE', '/api/v1/clusters/nobody', undefined],
      ['DELETE', '/api/v1/peerings/origin-a/nobody', undefined],
      ['DELETE', '/api/v1/api-tokens/at-000000000000', undefined],
      ['GET', '/api/v1/no-such-route', undefined],
    ] as const) {
      const res = await inject(method, url, admin, body);
      expect(res.statusCode, `${method} ${url}`).toBe(404);
      expect(res.json()).toMatchObject({ error: { code: 'NOT_FOUND' } });
    }
    const peering = await inject('POST', '/api/v1/peerings', admin, {
      origin: 'origin-a',
      donor: 'nobody',
    });
    expect(peering.statusCode).toBe(404);
    expect(await snapshot()).toEqual(before);
  });

  it('issues API tokens that work with their role and stop working when deleted', async () => {
    const res = await inject('POST', '/api/v1/api-tokens', admin, {
      role: 'viewer',
      description: 'grafana',
    });
    expect(res.statusCode).toBe(201);
    const { token, id } = res.json<{ token: string; id: string }>();
    const stored = await api.h.store.getApiToken(id);
    expect(stored?.secretHash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(token.split('.')[1]);
    const bearer = { authorization: `Bearer ${token}` };
    expect((await inject('GET', '/api/v1/clusters', bearer)).statusCode).toBe(200);
    expect(
      (await inject('PATCH', '/api/v1/clusters/donor-b', bearer, { cordoned: true })).statusCode,
    ).toBe(403);
    const listed = await inject('GET', '/api/v1/api-tokens');
    expect(listed.body).not.toContain('secretHash');
    expect((await inject('DELETE', `/api/v1/api-tokens/${id}`)).statusCode).toBe(204);
    expect((await inject('GET', '/api/v1/clusters', bearer)).statusCode).toBe(401);
  });

  it('removes a cluster with DELETE', async () => {
    await joinCluster(api.h.core, 'gone-soon', 'donor', [gpuNode('g', 1)]);
    const del = await inject('DELETE', '/api/v1/clusters/gone-soon');
    expect(del.statusCode).toBe(204);
    const after = await inject('GET', '/api/v1/clusters/gone-soon', viewer);
    expect(after.statusCode === 404 || after.json<{ state: string }>().state === 'Revoked').toBe(
      true,
    );
  });

  it('serves the same API over a real socket', async () => {
    const sock = await harness();
    try {
      await sock.app.listen({ host: '127.0.0.1', port: 0 });
      const { port } = sock.app.server.address() as AddressInfo;
      const base = `http://127.0.0.1:${port}`;
      const ok = await fetch(`${base}/api/v1/clusters`, { headers: admin });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual({ clusters: [] });
      const bad = await fetch(`${base}/api/v1/join-tokens`, {
        method: 'POST',
        headers: { ...admin, 'content-type': 'application/json' },
        body: '{not json',
      });
      expect(bad.status).toBe(400);
      expect(await bad.json()).toMatchObject({
        error: { code: 'INVALID_ARGUMENT', field: 'body' },
      });
      const made = await fetch(`${base}/api/v1/join-tokens`, {
        method: 'POST',
        headers: { ...admin, 'content-type': 'application/json' },
        body: JSON.stringify({ clusterId: 'sock-1', role: 'both' }),
      });
      expect(made.status).toBe(201);
      expect(await sock.store.listJoinTokens()).toHaveLength(1);
    } finally {
      await close(sock);
    }
  });
});
