// The broker's gRPC layer: certificate reloads and restarts. Every identity is obtained through Join, as
// clusters do. Shared setup: test-support/grpc/suite.ts.
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '@spillway/common';
import { joinAs, mtls, servingPair } from '../../test-support/grpc/harness.js';
import {
  HEARTBEAT_MS,
  eventually,
  placeReq,
  serverSuite,
  unaryStatus,
} from '../../test-support/grpc/suite.js';
const bed = serverSuite();
const { client, raw, probe, hello } = bed;

describe('certificates and restarts', () => {
  it('serves a reloaded certificate to new connections without a restart', async () => {
    const seen: string[] = [];
    const watch = (): grpc.ChannelCredentials =>
      grpc.credentials.createSsl(Buffer.from(bed.b.ca.certPem), null, null, {
        checkServerIdentity: (_host, cert) => {
          seen.push(cert.fingerprint256);
          return undefined;
        },
      });
    const id = await joinAs(bed.b, 'cert-a');
    const live = probe(raw(mtls(bed.b.ca.certPem, id)));
    await hello(live, 'COMPONENT_AGENT');
    const st1 = await unaryStatus(
      (q, cb) => raw(watch()).placement.Place(q, cb),
      placeReq('cert-a'),
    );
    expect(st1.code).toBe(grpc.status.UNAUTHENTICATED);
    const next = servingPair(bed.b.ca);
    bed.b.server.reloadCertificates({ serverCert: next.certPem, serverKey: next.keyPem });
    await unaryStatus((q, cb) => raw(watch()).placement.Place(q, cb), placeReq('cert-a'));
    expect(seen).toHaveLength(2);
    expect(seen[1]).toBe(new X509Certificate(next.certPem).fingerprint256);
    expect(seen[0]).not.toBe(seen[1]);
    expect(live.isEnded).toBe(false);
    // A broken pair is refused up front; the server keeps the one it has.
    expect(() =>
      bed.b.server.reloadCertificates({ serverKey: generateKeyPair().privateKeyPem }),
    ).toThrow(/does not match/);
    const ok = await unaryStatus(
      (q, cb) => raw(mtls(bed.b.ca.certPem, id)).placement.Place(q, cb),
      placeReq('cert-a'),
    );
    expect(ok.code).toBe(grpc.status.OK);
  });

  it('reconnects the client after the broker restarts, dropping sends meanwhile', async () => {
    const id = await joinAs(bed.b, 'restart-a');
    const c = client(id);
    let connects = 0;
    let disconnects = 0;
    const s = c.connect(
      'agent',
      { onConnected: () => void connects++, onDisconnected: () => void disconnects++ },
      { heartbeatIntervalMs: HEARTBEAT_MS, backoff: { baseMs: 50, maxMs: 200 } },
    );
    await s.waitConnected();
    expect(connects).toBe(1);
    await bed.b.server.stop(200);
    await eventually(() => expect(disconnects).toBe(1));
    expect(s.connected).toBe(false);
    expect(s.send({ heartbeat: { sent_unix_ms: 1 } })).toBe(false);
    await bed.b.restart();
    await s.waitConnected(10_000);
    expect(connects).toBe(2);
    expect((await bed.b.core.getCluster('restart-a')).connections.agent).toBeDefined();
  });
});
