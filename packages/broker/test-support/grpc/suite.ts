import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll } from 'vitest';
import { BrokerClient } from '@spillway/api';
import { SpillwayError } from '@spillway/common';
import { SERVER_NAME, rawClients, startBroker, type BrokerUnderTest } from './harness.js';
import { StreamProbe } from './stream-probe.js';

/**
 * The setup the gRPC server suites (src/grpc/server.*.int.test.ts) share: one broker per
 * file, the real Core on a real SQLite store, over real mTLS on 127.0.0.1 port 0, and the
 * clients, probes and streams a test opened, closed after the file.
 */

export const HEARTBEAT_MS = 300;
export const TIMEOUT_MS = 1_500;
export const COMMAND_TIMEOUT_MS = 1_500;

export interface ServerSuite {
  /** The file's broker (started in beforeAll). */
  readonly b: BrokerUnderTest;
  /** The Spillway client with this identity, closed after the file. */
  client(id: { certPem: string; keyPem: string }): BrokerClient;
  raw(creds: grpc.ChannelCredentials): ReturnType<typeof rawClients>;
  probe(r: ReturnType<typeof rawClients>): StreamProbe;
  /** Says hello as this component and waits for the welcome. */
  hello(p: StreamProbe, component: 'COMPONENT_AGENT' | 'COMPONENT_VIRTUAL_NODE'): Promise<void>;
  /** Closes this after the file, with what the suite opened. */
  closeAfter<T extends { close(): unknown }>(o: T): T;
}

export function serverSuite(): ServerSuite {
  let b: BrokerUnderTest | undefined;
  const opened: { close(): unknown }[] = [];
  beforeAll(async () => {
    b = await startBroker({
      heartbeatIntervalMs: HEARTBEAT_MS,
      heartbeatTimeoutMs: TIMEOUT_MS,
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
    });
  });
  afterAll(async () => {
    for (const o of opened.reverse()) await o.close();
    await b?.stop();
  });
  const suite: ServerSuite = {
    get b() {
      if (!b) throw new Error('the broker starts in beforeAll');
      return b;
    },
    client(id) {
      const c = new BrokerClient({
        address: suite.b.address,
        caPem: suite.b.ca.certPem,
        certPem: id.certPem,
        keyPem: id.keyPem,
        serverName: SERVER_NAME,
        callTimeoutMs: 5_000,
      });
      opened.push(c);
      return c;
    },
    raw(creds) {
      const r = rawClients(suite.b.address, creds);
      opened.push(r);
      return r;
    },
    probe(r) {
      const p = new StreamProbe(r.cluster.Connect());
      opened.push(p);
      return p;
    },
    closeAfter(o) {
      opened.push(o);
      return o;
    },
    async hello(p, component) {
      p.send({ hello: { component, version: 'test' } });
      await p.next((m) => m.msg === 'welcome');
    },
  };
  return suite;
}

export async function rejection(p: Promise<unknown>): Promise<SpillwayError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SpillwayError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

/** A raw unary call's status, for clients that are not the Spillway client. */
export function unaryStatus<Req>(
  fn: (req: Req, cb: (err: grpc.ServiceError | null) => void) => unknown,
  req: Req,
): Promise<{ code: grpc.status; spillwayCode: unknown; field: unknown; details: string }> {
  return new Promise((resolve) => {
    fn(req, (err) => {
      resolve({
        code: err?.code ?? grpc.status.OK,
        spillwayCode: err?.metadata.get('spillway-error-code')[0],
        field: err?.metadata.get('spillway-error-field')[0],
        details: err?.details ?? '',
      });
    });
  });
}

export async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export const placeReq = (origin: string, name = 'train-0') => ({
  pod: { origin_cluster: origin, namespace: 'ml', name, uid: `uid-${name}` },
  resource_name: 'nvidia.com/gpu',
  gpus: 1,
});

export function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
