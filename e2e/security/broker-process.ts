// A real broker process for the security scenarios, on free loopback ports with a temporary
// data dir, launched by the shared harness (e2e/harness/broker-process.ts).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startBrokerProcess as launch,
  type BrokerProcess as Launched,
} from '../harness/broker-process.js';

export const ADMIN_TOKEN = 'spillway-e2e-admin-0123456789';
export const VIEWER_TOKEN = 'spillway-e2e-viewer-0123456789';

export type BrokerProcess = Launched;

export async function startBrokerProcess(flags: string[] = []): Promise<BrokerProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'spillway-sec-'));
  const b = await launch({
    dir,
    adminToken: ADMIN_TOKEN,
    viewerToken: VIEWER_TOKEN,
    flags,
  });
  return {
    ...b,
    async stop(graceMs?: number) {
      await b.stop(graceMs);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A join token minted through the REST API, as `spillctl` does. */
export async function mintJoinToken(
  b: BrokerProcess,
  clusterId: string,
  role: 'origin' | 'donor' | 'both',
): Promise<string> {
  const res = await b.rest('POST', '/api/v1/join-tokens', { body: { clusterId, role } });
  if (res.status !== 201) throw new Error(`join token: ${res.status} ${JSON.stringify(res.body)}`);
  return (res.body as { token: string }).token;
}
