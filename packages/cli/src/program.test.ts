import { describe, expect, it } from 'vitest';
import { run } from './program.js';
import type { CliIO } from './context.js';

function io(): CliIO & { out: string; err: string } {
  const state = { out: '', err: '' };
  return Object.assign(state, {
    stdout: { write: (s: string) => ((state.out += s), true) },
    stderr: { write: (s: string) => ((state.err += s), true) },
    env: { HOME: '/nonexistent-home-for-tests' },
    cwd: '/',
  });
}

// Only the parts that need no broker and no cluster: parsing, help, exit codes.
describe('spillctl command line', () => {
  it('prints help with exit codes for no arguments and for --help', async () => {
    for (const argv of [[], ['--help'], ['peer', '--help']]) {
      const o = io();
      expect(await run(argv, o)).toBe(0);
      expect(o.out).toMatch(/Exit codes:/);
      expect(o.err).toBe('');
    }
  });

  it.each([
    [['get'], /missing required argument 'resource'/],
    [['get', 'nodes'], /'nodes' is invalid for argument 'resource'/],
    [['get', 'peerings', 'x'], /takes no name/],
    [['get', 'clusters', '--donor', 'a'], /--donor does not apply to "get clusters"/],
    [['join', 'ok-name', '--role', 'lender'], /'lender' is invalid.*origin, donor, both/],
    [['peer', 'a', 'b', '--gpu-product', ''], /--gpu-product.*must not be empty/],
    [['unpeer', 'a', 'b', '--timeout', '0s'], /above zero/],
    [['simulate', '--origin', 'a', '--gpus', 'two'], /--gpus.*'two' is invalid/],
    [['describe', 'node', 'x'], /'node' is invalid/],
    [['offload', 'namespace', 'Bad_NS'], /not a valid namespace name/],
    [['offload'], /needs a subcommand: namespace/],
    [['local', 'frob'], /unknown command "local frob"/],
    [
      ['--server', 'localhost:8080', 'get', 'clusters'],
      /--server.*'localhost:8080' is invalid.*http:\/\//,
    ],
  ])('%j is a usage error: one line, exit 2', async (argv, pattern) => {
    const o = io();
    expect(await run(argv, o)).toBe(2);
    expect(o.out).toBe('');
    expect(o.err.trimEnd().split('\n')).toHaveLength(1);
    expect(o.err).toMatch(/^spillctl: /);
    expect(o.err).toMatch(pattern);
  });
});
