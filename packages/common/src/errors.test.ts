import { Metadata, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  GRPC_CODE_METADATA_KEY,
  SpillwayError,
  fromGrpcError,
  grpcStatusOf,
  httpStatusOf,
  toGrpcError,
  toSpillwayError,
} from './errors.js';

describe('SpillwayError', () => {
  it('keeps code, field and cause, and shows clients no internals', () => {
    const cause = new Error('disk on fire');
    const e = new SpillwayError(ErrorCode.INVALID_ARGUMENT, 'gpus must be positive', {
      field: 'gpus',
      cause,
    });
    expect(e.cause).toBe(cause);
    expect(e.toJSON()).toEqual({
      code: 'INVALID_ARGUMENT',
      message: 'gpus must be positive',
      field: 'gpus',
    });
    expect(JSON.stringify(e)).not.toContain('disk on fire');
  });

  it('maps codes to HTTP and gRPC status', () => {
    expect(httpStatusOf(new SpillwayError(ErrorCode.NOT_FOUND, 'x'))).toBe(404);
    expect(httpStatusOf(new SpillwayError(ErrorCode.PERMISSION_DENIED, 'x'))).toBe(403);
    expect(httpStatusOf(new SpillwayError(ErrorCode.UNAUTHENTICATED, 'x'))).toBe(401);
    expect(httpStatusOf(new SpillwayError(ErrorCode.STORE_UNAVAILABLE, 'x'))).toBe(503);
    expect(httpStatusOf(new Error('boom'))).toBe(500);
    expect(grpcStatusOf(new SpillwayError(ErrorCode.INVALID_ARGUMENT, 'x'))).toBe(
      status.INVALID_ARGUMENT,
    );
    expect(grpcStatusOf(new SpillwayError(ErrorCode.NO_FIT, 'x'))).toBe(status.RESOURCE_EXHAUSTED);
    expect(grpcStatusOf(new SpillwayError(ErrorCode.CERT_REVOKED, 'x'))).toBe(
      status.UNAUTHENTICATED,
    );
    expect(grpcStatusOf('weird')).toBe(status.INTERNAL);
  });

  it('hides the message of internal errors from gRPC peers', () => {
    const p = toGrpcError(new Error('SELECT * FROM secrets failed'));
    expect(p).toMatchObject({
      code: status.INTERNAL,
      details: 'internal error',
      spillwayCode: 'INTERNAL',
    });
    const q = toGrpcError(new SpillwayError(ErrorCode.NO_PEERING, 'origin a is not peered with b'));
    expect(q.details).toBe('origin a is not peered with b');
  });

  it('rebuilds the stable code from gRPC metadata', () => {
    const md = new Metadata();
    md.set(GRPC_CODE_METADATA_KEY, 'QUOTA_EXCEEDED');
    const e = fromGrpcError({ code: status.RESOURCE_EXHAUSTED, details: 'quota', metadata: md });
    expect(e.code).toBe('QUOTA_EXCEEDED');
    expect(fromGrpcError({ code: status.UNAVAILABLE, details: 'down' }).code).toBe('UNAVAILABLE');
    const bogus = new Metadata();
    bogus.set(GRPC_CODE_METADATA_KEY, 'NOT_A_CODE');
    expect(fromGrpcError({ code: status.NOT_FOUND, metadata: bogus }).code).toBe('NOT_FOUND');
  });

  it('wraps unknown throws', () => {
    const e = toSpillwayError('str');
    expect(e.code).toBe('INTERNAL');
    expect(e.message).toBe('str');
    const same = new SpillwayError(ErrorCode.CONFLICT, 'c');
    expect(toSpillwayError(same)).toBe(same);
  });
});
