import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

/** The broker's server stack: installing spillctl must never pull any of it. */
const SERVER_ONLY = ['@spillway/broker', 'fastify', '@fastify/swagger', 'ioredis'];

interface LsNode {
  dependencies?: Record<string, LsNode>;
}

function names(node: LsNode, into = new Set<string>()): Set<string> {
  for (const [name, child] of Object.entries(node.dependencies ?? {})) {
    into.add(name);
    names(child, into);
  }
  return into;
}

describe('what installing spillctl pulls in', () => {
  it('has no broker, fastify or ioredis among its production dependencies', () => {
    const ls = spawnSync(
      'npm',
      ['ls', '--workspace', 'packages/cli', '--omit=dev', '--all', '--json'],
      {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(ls.status, `npm ls failed (run npm install?): ${ls.stderr}`).toBe(0);
    const tree = names(JSON.parse(ls.stdout) as LsNode);
    // What spillctl does need is there, so an empty answer cannot pass.
    expect([...tree]).toEqual(
      expect.arrayContaining(['@spillway/cli', '@spillway/api', 'commander']),
    );
    expect(SERVER_ONLY.filter((n) => tree.has(n))).toEqual([]);
  }, 60_000);
});
