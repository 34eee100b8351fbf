import { beforeAll, describe, expect, it } from 'vitest';
import { buildBroker, runBrokerCommand as run } from '../../../e2e/harness/broker-process.js';

// The built daemon, run the way an operator runs it, through the launcher the e2e suites share.
beforeAll(() => buildBroker(), 300_000);

describe('spillway-broker main', () => {
  it('prints every flag with --help', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    for (const flag of [
      '--grpc-port',
      '--http-port',
      '--data-dir',
      '--store',
      '--admin-token',
      '--pki-dir',
    ]) {
      expect(r.stdout).toContain(flag);
    }
    expect(r.stdout).toContain('[SPILLWAY_GRPC_PORT]');
  });

  it.each([
    [['--bogus'], 'bogus'],
    [['--grpc-port', '99999'], '--grpc-port'],
    [['--store', 'etcd'], '--store'],
    [['stray'], 'stray'],
  ])('exits 2 with one line for %j', (args, needle) => {
    const r = run(args);
    expect(r.status).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^spillway-broker: /);
    expect(lines[0]).toContain(needle);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
  // Serving and stopping on SIGTERM: e2e/harness/broker-process.e2e.test.ts, through the one
  // launcher the e2e suites and benchmarks share.
});
