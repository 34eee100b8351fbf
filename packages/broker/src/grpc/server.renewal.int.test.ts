// The broker's gRPC layer: certificate renewal over real mTLS. A certificate a renewal
// replaced works until the agent connects with the new one; from then on it is refused.
// Shared setup: test-support/grpc/suite.ts.
import { describe, expect, it } from 'vitest';
import { inspectCertificate, normalizeSerial } from '@spillway/common';
import { joinAs, mtls } from '../../test-support/grpc/harness.js';
import { eventually, serverSuite, unaryStatus } from '../../test-support/grpc/suite.js';

const bed = serverSuite();
const { client, raw, probe, hello } = bed;

/** An authenticated call that changes nothing: NOT_FOUND when the certificate is accepted. */
async function answerTo(id: { certPem: string; keyPem: string }): Promise<unknown> {
  const r = raw(mtls(bed.b.ca.certPem, id));
  const st = await unaryStatus((q, cb) => r.placement.Release(q, cb), {
    reservation_id: 'no-such-reservation',
    reason: '',
  });
  return st.spillwayCode;
}

describe('certificate renewal', () => {
  it('revokes the replaced certificate once the agent connects with the renewed one', async () => {
    const old = await joinAs(bed.b, 'renew-a', 'donor');
    const c = client(old);
    const renewed = await c.renew();
    const oldSerial = normalizeSerial(inspectCertificate(old.certPem).serial);
    const newSerial = normalizeSerial(inspectCertificate(renewed.certPem).serial);
    expect(newSerial).not.toBe(oldSerial);

    // Not confirmed yet: both certificates work, and an agent stream on the old one (its
    // renewal answer lost, say) confirms nothing.
    expect(await answerTo(old)).toBe('NOT_FOUND');
    expect(await answerTo(renewed)).toBe('NOT_FOUND');
    const onOld = probe(raw(mtls(bed.b.ca.certPem, old)));
    await hello(onOld, 'COMPONENT_AGENT');
    expect(await answerTo(old)).toBe('NOT_FOUND');
    expect((await bed.b.store.getCluster('renew-a'))?.supersededSerials).toEqual([oldSerial]);

    // The agent connects with the renewed certificate: the renewal is confirmed.
    const onNew = probe(raw(mtls(bed.b.ca.certPem, renewed)));
    await hello(onNew, 'COMPONENT_AGENT');
    await eventually(async () => expect(await answerTo(old)).toBe('CERT_REVOKED'));
    expect(await answerTo(renewed)).toBe('NOT_FOUND');
    const revoked = (await bed.b.store.listRevoked()).filter(
      (e) => e.subject === 'cluster:renew-a',
    );
    expect(revoked.map((e) => [e.serial, e.reason])).toEqual([
      [oldSerial, 'superseded by renewal'],
    ]);
    expect((await bed.b.store.getCluster('renew-a'))?.supersededSerials).toBeUndefined();
    // A new stream on the revoked certificate is refused.
    const again = probe(raw(mtls(bed.b.ca.certPem, old)));
    again.send({ hello: { component: 'COMPONENT_AGENT', version: 'test' } });
    expect((await again.ended).spillwayCode).toBe('CERT_REVOKED');
  });

  it('a virtual-node stream on the renewed certificate confirms nothing; the agent does', async () => {
    const old = await joinAs(bed.b, 'renew-b', 'both');
    const renewed = await client(old).renew();
    const shim = probe(raw(mtls(bed.b.ca.certPem, renewed)));
    await hello(shim, 'COMPONENT_VIRTUAL_NODE');
    expect(await answerTo(old)).toBe('NOT_FOUND');
    // Renewing twice before confirming: both replaced certificates go at confirmation.
    const twice = await client(renewed).renew();
    const agent = probe(raw(mtls(bed.b.ca.certPem, twice)));
    await hello(agent, 'COMPONENT_AGENT');
    await eventually(async () => expect(await answerTo(old)).toBe('CERT_REVOKED'));
    expect(await answerTo(renewed)).toBe('CERT_REVOKED');
    expect(await answerTo(twice)).toBe('NOT_FOUND');
  });
});
