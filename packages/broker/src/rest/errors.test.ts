import { describe, expect, it } from 'vitest';
import { SpillwayError } from '@spillway/common';
import { toHttpError, validationError } from './errors.js';

describe('validationError', () => {
  it('names an unknown field, nested paths and missing ones', () => {
    expect(
      validationError(
        [{ keyword: 'additionalProperties', params: { additionalProperty: 'gpu' } }],
        'body',
      ).toJSON(),
    ).toEqual({ code: 'INVALID_ARGUMENT', message: 'gpu: unknown field in body', field: 'gpu' });
    expect(
      validationError(
        [{ keyword: 'minimum', instancePath: '/requirements/0/values', message: 'must be >= 1' }],
        'body',
      ).field,
    ).toBe('requirements[0].values');
    expect(
      validationError([{ keyword: 'required', params: { missingProperty: 'origin' } }], 'body')
        .message,
    ).toBe('origin: required in body');
    expect(
      validationError(
        [{ keyword: 'enum', instancePath: '/role', params: { allowedValues: ['a', 'b'] } }],
        'body',
      ).message,
    ).toBe('role: must be one of a, b');
  });
});

describe('toHttpError', () => {
  it('maps Spillway codes and fastify body errors, hiding internals', () => {
    expect(toHttpError(new SpillwayError('NOT_FOUND', 'x'), 10).status).toBe(404);
    expect(toHttpError({ code: 'FST_ERR_CTP_INVALID_JSON_BODY', statusCode: 400 }, 10).status).toBe(
      400,
    );
    const big = toHttpError({ code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }, 10);
    expect([big.status, big.error.code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    const boom = toHttpError(new Error('secret db path /var/x'), 10);
    expect([boom.status, boom.error.message]).toEqual([500, 'internal error']);
  });
});
