import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBrokerProcess } from './broker-process.js';

// The broker daemon as an operator runs it, through the launcher every e2e suite and the
// benchmarks use: configured from the environment, serving, and stopping cleanly on SIGTERM.
// (Its flag handling is packages/broker/src/main.int.test.ts.)

const TOKEN = 'main-test-admin-token-0123456789';
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'spillway-main-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('spillway-broker daemon', () => {
  it('serves, then shuts down cleanly on SIGTERM with exit code 0', async () => {
    const b = await startBrokerProcess({ dir, env: { SPILLWAY_ADMIN_TOKEN: TOKEN } });
    try {
      expect((await b.rest('GET', '/readyz', { token: null })).status).toBe(200);
      const listed = await b.rest('GET', '/api/v1/clusters', { token: TOKEN });
      expect(listed.status).toBe(200);
      expect(listed.body).toEqual({ clusters: [] });
    } finally {
      await b.stop();
    }
    expect(await b.exited).toEqual({ code: 0, signal: null });
    const log = await readFile(b.logFile, 'utf8');
    expect(log).toContain('"msg":"stopped"');
    expect(log).not.toContain(TOKEN);
  });
});
