import { describe, expect, it } from 'vitest';
import { identityUri, parseIdentityUri, tenantNamespace, validateClusterId } from './identity.js';

describe('identity', () => {
  it.each(['a', 'gpu-east', 'donor-b', 'x1'])('accepts cluster ID %s', (id) =>
    expect(validateClusterId(id)).toBe(id),
  );
  it.each(['', 'A', '-a', 'a-', 'a_b', 'a.b', 'x'.repeat(41), 42, null])(
    'refuses cluster ID %j',
    (id) => {
      expect(() => validateClusterId(id, 'cluster_id')).toThrow(/cluster_id/);
    },
  );
  it('round-trips URIs', () => {
    expect(identityUri({ kind: 'cluster', name: 'a' })).toBe('spillway://cluster/a');
    expect(parseIdentityUri('spillway://admin/root')).toEqual({ kind: 'admin', name: 'root' });
    expect(parseIdentityUri('spiffe://cluster/a')).toBeUndefined();
    expect(parseIdentityUri('spillway://cluster/a/../b')).toBeUndefined();
    expect(tenantNamespace('a')).toBe('spillway-a');
  });
});
