// The generated API reference (docs/reference/*.md) matches the broker's OpenAPI document and
// the protos; the Helm commands the docs show are the ones these tests run.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, run } from './helm.js';

describe('docs/reference', () => {
  it('is current (node docs/reference/generate.mjs --check)', () => {
    const r = run(process.execPath, [
      join(REPO_ROOT, 'docs', 'reference', 'generate.mjs'),
      '--check',
    ]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
