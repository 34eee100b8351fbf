import { describe, expect, it } from 'vitest';
import { ApiException } from '@kubernetes/client-node';
import { ErrorCode, SpillwayError } from '@spillway/common';
import { toKubeAwareError } from './executor.js';

describe('toKubeAwareError', () => {
  it('calls an unreachable donor API server UNAVAILABLE, not an internal error', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), {
      code: 'ECONNREFUSED',
    });
    const fetchFailed = new TypeError('fetch failed', { cause: refused });
    for (const err of [fetchFailed, refused]) {
      const e = toKubeAwareError(err);
      expect(e.code).toBe(ErrorCode.UNAVAILABLE);
      expect(e.message).toMatch(/^donor API server unreachable: /);
    }
  });

  it('maps API statuses, keeps Spillway errors, and leaves other bugs internal', () => {
    const api = (code: number, message: string): ApiException<string> =>
      new ApiException(code, message, JSON.stringify({ message }), {});
    expect(toKubeAwareError(api(403, 'exceeded quota: gpu')).code).toBe(ErrorCode.QUOTA_EXCEEDED);
    expect(toKubeAwareError(api(409, 'already exists')).code).toBe(ErrorCode.CONFLICT);
    expect(toKubeAwareError(api(503, 'etcd down')).code).toBe(ErrorCode.UNAVAILABLE);
    const own = new SpillwayError(ErrorCode.POD_REFUSED, 'hostPath');
    expect(toKubeAwareError(own)).toBe(own);
    expect(toKubeAwareError(new TypeError('Cannot read properties of undefined')).code).toBe(
      ErrorCode.INTERNAL,
    );
  });
});
