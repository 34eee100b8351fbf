import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, silentLogger } from '@spillway/common';
import { Core } from '../core/broker-core.js';
import { Metrics } from '../metrics.js';
import { openSqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';
import { buildRestApp } from './app.js';
import { RestAuth } from './auth.js';

// The REST API at its edge, on a real listening socket: what Node's HTTP parser refuses,
// uploads over the body limit, and many callers behind one address.

const ADMIN = 'edge-admin-token-0123456789abcdef';
const FAILURE_LIMIT = 10;

interface Edge {
  app: FastifyInstance;
  port: number;
  close(): Promise<void>;
}

async function edge(opts: { trustedProxies?: string[] } = {}): Promise<Edge> {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-edge-'));
  const logger = silentLogger();
  const store: Store = await openSqliteStore({ path: join(dir, 'broker.db'), logger });
  const core = new Core({
    store,
    ca: createCertificateAuthority(),
    logger,
    brokerId: 'edge-test',
    placementPolicy: 'binpack',
  });
  const metrics = new Metrics();
  const auth = new RestAuth({ store, adminToken: ADMIN, failureLimit: FAILURE_LIMIT, metrics });
  const app = buildRestApp({ core, store, logger, auth, metrics, ...opts });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    app,
    port: (app.server.address() as AddressInfo).port,
    async close() {
      await app.close();
      await core.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface RawResponse {
  status: number;
  headers: string;
  body: unknown;
}

/** Parses every HTTP/1.1 response in `raw` (bodies framed by Content-Length). */
function parseResponses(raw: Buffer): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = raw;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) throw new Error(`truncated response: ${JSON.stringify(rest.toString())}`);
    const head = rest.subarray(0, end).toString('latin1');
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1]);
    const length = Number(/^content-length: *(\d+)$/im.exec(head)?.[1] ?? 0);
    const text = rest.subarray(end + 4, end + 4 + length).toString('utf8');
    out.push({ status, headers: head, body: text === '' ? undefined : JSON.parse(text) });
    rest = rest.subarray(end + 4 + length);
  }
  return out;
}

/**
 * Writes `bytes` on a fresh connection, as fast as the socket takes them, then reads until
 * the broker closes. Resolves with what came back and the socket error, if any.
 */
function exchange(port: number, bytes: Buffer | string): Promise<{ raw: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: string | undefined;
    const s = connect({ host: '127.0.0.1', port }, () => s.end(bytes));
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.setTimeout(20_000, () => s.destroy(new Error('timeout')));
    s.on('close', () => resolve({ raw: Buffer.concat(chunks), ...(error ? { error } : {}) }));
  });
}

/** The documented `{ error: { code, message, field? } }`, and nothing else. */
function expectErrorBody(body: unknown): void {
  expect(Object.keys(body as object)).toEqual(['error']);
  const error = (body as { error: Record<string, unknown> }).error;
  expect(typeof error.code).toBe('string');
  expect(typeof error.message).toBe('string');
}

describe('protocol-level errors answer the documented { error } body', () => {
  let e: Edge;
  beforeAll(async () => {
    e = await edge();
  });
  afterAll(() => e?.close());

  it.each([
    ['bytes that are not HTTP', 'hello, broker\r\n\r\n', 400, 'INVALID_ARGUMENT'],
    [
      'a header line without a colon',
      'GET /healthz HTTP/1.1\r\nHost x\r\n\r\n',
      400,
      'INVALID_ARGUMENT',
    ],
    [
      'a 20 KB header',
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ${'a'.repeat(20 * 1024)}\r\n\r\n`,
      431,
      'PAYLOAD_TOO_LARGE',
    ],
  ])('%s', async (_what, bytes, status, code) => {
    const { raw } = await exchange(e.port, bytes);
    const [res, ...more] = parseResponses(raw);
    expect(more).toEqual([]);
    expect(res?.status).toBe(status);
    expect(res?.body).toMatchObject({ error: { code } });
    expectErrorBody(res?.body);
  });

  it('a Content-Length shorter than the body', async () => {
    const body = JSON.stringify({ origin: 'origin-a', donor: 'donor-b' });
    const { raw } = await exchange(
      e.port,
      'POST /api/v1/peerings HTTP/1.1\r\nHost: x\r\n' +
        `Authorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\n` +
        `Content-Length: 7\r\n\r\n${body}`,
    );
    const responses = parseResponses(raw);
    expect(responses.length).toBeGreaterThan(0);
    for (const res of responses) {
      expect(res.status).toBe(400);
      expectErrorBody(res.body);
    }
  });
});

// The uploading client runs in a worker thread, on its own event loop, as a real client
// does: on the test's own loop the broker could only close between the client's writes.
const UPLOADER = `
const { parentPort, workerData } = require('node:worker_threads');
const { connect } = require('node:net');
const { port, head, bodyBytes, tries } = workerData;
const body = Buffer.alloc(bodyBytes, 'x');
function once() {
  return new Promise((resolve) => {
    const chunks = [];
    let error;
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.write(head);
      s.end(body);
    });
    s.on('data', (d) => chunks.push(d));
    s.on('error', (e) => (error = e.code || e.message));
    s.setTimeout(20000, () => s.destroy(new Error('timeout')));
    s.on('close', () => resolve({ raw: Buffer.concat(chunks).toString('latin1'), error }));
  });
}
(async () => {
  const out = [];
  for (let i = 0; i < tries; i++) out.push(await once());
  parentPort.postMessage(out);
})();
`;

function upload(
  port: number,
  head: string,
  bodyBytes: number,
  tries: number,
): Promise<{ raw: string; error?: string }[]> {
  return new Promise((resolve, reject) => {
    const w = new Worker(UPLOADER, { eval: true, workerData: { port, head, bodyBytes, tries } });
    w.once('message', (m: { raw: string; error?: string }[]) => {
      resolve(m);
      void w.terminate();
    });
    w.once('error', reject);
  });
}

describe('a body over the limit', () => {
  let e: Edge;
  beforeAll(async () => {
    e = await edge();
  });
  afterAll(() => e?.close());

  const BODY = 2 * 1024 * 1024;
  const request = (framing: string): string =>
    'POST /api/v1/peerings HTTP/1.1\r\nHost: x\r\n' +
    `Authorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\n${framing}\r\n`;

  // Before the fix the broker closed with the upload unread: the kernel reset the
  // connection and the client, still writing, saw EPIPE or ECONNRESET in most tries.
  it('answers 413 to a client that writes 2 MB and then reads, 50 times in a row', async () => {
    const results = await upload(e.port, request(`Content-Length: ${BODY}\r\n`), BODY, 50);
    const failures = results.flatMap(({ raw, error }, i) => {
      const res = raw.length > 0 ? parseResponses(Buffer.from(raw, 'latin1'))[0] : undefined;
      if (res?.status === 413 && error === undefined) {
        expect(res.body).toMatchObject({ error: { code: 'PAYLOAD_TOO_LARGE', field: 'body' } });
        expect(res.headers).toMatch(/^connection: close$/im);
        return [];
      }
      return [`try ${i + 1}: ${res?.status ?? 'no answer'} ${error ?? ''}`];
    });
    expect(failures).toEqual([]);
  });

  it('answers 413 to a chunked upload that grows past the limit', async () => {
    const big = Buffer.alloc(BODY, 'x');
    const { raw, error } = await exchange(
      e.port,
      Buffer.concat([
        Buffer.from(request('Transfer-Encoding: chunked\r\n')),
        Buffer.from(`${big.length.toString(16)}\r\n`),
        big,
        Buffer.from('\r\n0\r\n\r\n'),
      ]),
    );
    expect(error).toBeUndefined();
    expect(parseResponses(raw)[0]).toMatchObject({
      status: 413,
      body: { error: { code: 'PAYLOAD_TOO_LARGE' } },
    });
  });
});

describe('many callers behind one address', () => {
  const get = (port: number, token: string, forwardedFor?: string) =>
    fetch(`http://127.0.0.1:${port}/api/v1/clusters`, {
      headers: {
        authorization: `Bearer ${token}`,
        ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}),
      },
    });

  it('never refuses a valid token because others failed from the same address', async () => {
    const e = await edge();
    try {
      for (let i = 0; i < 2 * FAILURE_LIMIT; i++) {
        const res = await get(e.port, `wrong-token-${i}`);
        expect(res.status).toBe(i < FAILURE_LIMIT ? 401 : 429);
        const body = (await res.json()) as { error: { code: string } };
        expect(body.error.code).toBe(i < FAILURE_LIMIT ? 'UNAUTHENTICATED' : 'RATE_LIMITED');
        if (i >= FAILURE_LIMIT) expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      }
      const ok = await get(e.port, ADMIN);
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual({ clusters: [] });
      // A request with no credential at all from that address is still limited.
      const none = await fetch(`http://127.0.0.1:${e.port}/api/v1/clusters`);
      expect(none.status).toBe(429);
    } finally {
      await e.close();
    }
  });

  it('ignores X-Forwarded-For unless the hop is a trusted proxy', async () => {
    const e = await edge();
    try {
      for (let i = 0; i < FAILURE_LIMIT; i++) {
        expect((await get(e.port, 'wrong', `203.0.113.${i + 1}`)).status).toBe(401);
      }
      // Each request claimed another client, but the address is the same: limited.
      expect((await get(e.port, 'wrong', '198.51.100.7')).status).toBe(429);
    } finally {
      await e.close();
    }
  });

  it('tells callers apart by X-Forwarded-For from a trusted proxy', async () => {
    const e = await edge({ trustedProxies: ['127.0.0.0/8'] });
    try {
      for (let i = 0; i < FAILURE_LIMIT; i++) {
        expect((await get(e.port, 'wrong', '203.0.113.9')).status).toBe(401);
      }
      expect((await get(e.port, 'wrong', '203.0.113.9')).status).toBe(429);
      // Another caller behind the same proxy is not limited for it...
      expect((await get(e.port, 'wrong', '198.51.100.7')).status).toBe(401);
      // ...nor is a spoofed hop in front of the real client: only the trusted hops are skipped.
      expect((await get(e.port, 'wrong', '203.0.113.9, 198.51.100.8')).status).toBe(401);
      expect((await get(e.port, ADMIN, '203.0.113.9')).status).toBe(200);
    } finally {
      await e.close();
    }
  });
});
