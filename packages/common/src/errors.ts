import { status as GrpcStatus } from '@grpc/grpc-js';

/**
 * Stable error codes. A code never changes meaning once released: clients and scripts
 * match on it, humans read the message.
 */
export const ErrorCode = {
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  INVALID_CONFIG: 'INVALID_CONFIG',
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'ALREADY_EXISTS',
  CONFLICT: 'CONFLICT',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  RATE_LIMITED: 'RATE_LIMITED',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  // Placement refusals.
  NO_PEERING: 'NO_PEERING',
  NO_FIT: 'NO_FIT',
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  DONOR_NOT_READY: 'DONOR_NOT_READY',
  // A donor refused a pod spec it does not allow.
  POD_REFUSED: 'POD_REFUSED',
  // PKI.
  CERT_UNTRUSTED: 'CERT_UNTRUSTED',
  CERT_EXPIRED: 'CERT_EXPIRED',
  CERT_NOT_YET_VALID: 'CERT_NOT_YET_VALID',
  CERT_REVOKED: 'CERT_REVOKED',
  CERT_INVALID: 'CERT_INVALID',
  TOKEN_INVALID: 'TOKEN_INVALID',
  // Infrastructure.
  UNAVAILABLE: 'UNAVAILABLE',
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  TIMEOUT: 'TIMEOUT',
  CANCELLED: 'CANCELLED',
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface SpillwayErrorOptions {
  cause?: unknown;
  /** The input field that was wrong, e.g. "spec.gpus" or "--broker". */
  field?: string;
  /** Extra machine-readable facts safe to show a client. */
  details?: Record<string, unknown>;
}

/** The one error type Spillway code throws on purpose. */
export class SpillwayError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: SpillwayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SpillwayError';
    this.code = code;
    this.field = options.field;
    this.details = options.details;
  }

  /** What a client may see: code, message, field; never a stack or a cause's internals. */
  toJSON(): {
    code: ErrorCode;
    message: string;
    field?: string;
    details?: Record<string, unknown>;
  } {
    return {
      code: this.code,
      message: this.message,
      ...(this.field === undefined ? {} : { field: this.field }),
      ...(this.details === undefined ? {} : { details: this.details }),
    };
  }
}

/** INVALID_ARGUMENT naming the bad input field: the message reads "<field>: <message>". */
export function invalid(field: string, message: string): SpillwayError {
  return new SpillwayError(ErrorCode.INVALID_ARGUMENT, `${field}: ${message}`, { field });
}

export function isSpillwayError(err: unknown, code?: ErrorCode): err is SpillwayError {
  return err instanceof SpillwayError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a SpillwayError; unknown failures become INTERNAL. */
export function toSpillwayError(
  err: unknown,
  fallback: ErrorCode = ErrorCode.INTERNAL,
): SpillwayError {
  if (err instanceof SpillwayError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new SpillwayError(fallback, message || 'internal error', { cause: err });
}

const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  INVALID_CONFIG: 400,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  CONFLICT: 409,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  RATE_LIMITED: 429,
  PAYLOAD_TOO_LARGE: 413,
  NO_PEERING: 409,
  NO_FIT: 409,
  QUOTA_EXCEEDED: 409,
  DONOR_NOT_READY: 503,
  POD_REFUSED: 422,
  CERT_UNTRUSTED: 401,
  CERT_EXPIRED: 401,
  CERT_NOT_YET_VALID: 401,
  CERT_REVOKED: 401,
  CERT_INVALID: 400,
  TOKEN_INVALID: 401,
  UNAVAILABLE: 503,
  STORE_UNAVAILABLE: 503,
  TIMEOUT: 504,
  CANCELLED: 499,
  INTERNAL: 500,
};

const GRPC_STATUS: Record<ErrorCode, GrpcStatus> = {
  INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  INVALID_CONFIG: GrpcStatus.INVALID_ARGUMENT,
  NOT_FOUND: GrpcStatus.NOT_FOUND,
  ALREADY_EXISTS: GrpcStatus.ALREADY_EXISTS,
  CONFLICT: GrpcStatus.ABORTED,
  UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  RATE_LIMITED: GrpcStatus.RESOURCE_EXHAUSTED,
  PAYLOAD_TOO_LARGE: GrpcStatus.RESOURCE_EXHAUSTED,
  NO_PEERING: GrpcStatus.FAILED_PRECONDITION,
  NO_FIT: GrpcStatus.RESOURCE_EXHAUSTED,
  QUOTA_EXCEEDED: GrpcStatus.RESOURCE_EXHAUSTED,
  DONOR_NOT_READY: GrpcStatus.UNAVAILABLE,
  POD_REFUSED: GrpcStatus.FAILED_PRECONDITION,
  CERT_UNTRUSTED: GrpcStatus.UNAUTHENTICATED,
  CERT_EXPIRED: GrpcStatus.UNAUTHENTICATED,
  CERT_NOT_YET_VALID: GrpcStatus.UNAUTHENTICATED,
  CERT_REVOKED: GrpcStatus.UNAUTHENTICATED,
  CERT_INVALID: GrpcStatus.INVALID_ARGUMENT,
  TOKEN_INVALID: GrpcStatus.UNAUTHENTICATED,
  UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  STORE_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  TIMEOUT: GrpcStatus.DEADLINE_EXCEEDED,
  CANCELLED: GrpcStatus.CANCELLED,
  INTERNAL: GrpcStatus.INTERNAL,
};

export function httpStatusOf(err: unknown): number {
  return HTTP_STATUS[toSpillwayError(err).code];
}

export function grpcStatusOf(err: unknown): GrpcStatus {
  return GRPC_STATUS[toSpillwayError(err).code];
}

/** Metadata key carrying the stable Spillway code on gRPC errors. */
export const GRPC_CODE_METADATA_KEY = 'spillway-error-code';
export const GRPC_FIELD_METADATA_KEY = 'spillway-error-field';

/** The shape a gRPC handler's callback takes; `metadata` carries code and field. */
export interface GrpcErrorPayload {
  code: GrpcStatus;
  details: string;
  spillwayCode: ErrorCode;
  field: string | undefined;
}

export function toGrpcError(err: unknown): GrpcErrorPayload {
  const e = toSpillwayError(err);
  // Internal failures never leak their message to a peer.
  const details = e.code === ErrorCode.INTERNAL ? 'internal error' : e.message;
  return { code: GRPC_STATUS[e.code], details, spillwayCode: e.code, field: e.field };
}

const FROM_GRPC: Partial<Record<GrpcStatus, ErrorCode>> = {
  [GrpcStatus.INVALID_ARGUMENT]: ErrorCode.INVALID_ARGUMENT,
  [GrpcStatus.NOT_FOUND]: ErrorCode.NOT_FOUND,
  [GrpcStatus.ALREADY_EXISTS]: ErrorCode.ALREADY_EXISTS,
  [GrpcStatus.ABORTED]: ErrorCode.CONFLICT,
  [GrpcStatus.UNAUTHENTICATED]: ErrorCode.UNAUTHENTICATED,
  [GrpcStatus.PERMISSION_DENIED]: ErrorCode.PERMISSION_DENIED,
  [GrpcStatus.RESOURCE_EXHAUSTED]: ErrorCode.RATE_LIMITED,
  [GrpcStatus.FAILED_PRECONDITION]: ErrorCode.CONFLICT,
  [GrpcStatus.UNAVAILABLE]: ErrorCode.UNAVAILABLE,
  [GrpcStatus.DEADLINE_EXCEEDED]: ErrorCode.TIMEOUT,
  [GrpcStatus.CANCELLED]: ErrorCode.CANCELLED,
};

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

/** Rebuilds a SpillwayError from a gRPC client error, keeping the stable code if present. */
export function fromGrpcError(err: unknown): SpillwayError {
  if (err instanceof SpillwayError) return err;
  const e = err as {
    code?: number;
    details?: string;
    message?: string;
    metadata?: { get(k: string): unknown[] };
  };
  const meta = e.metadata?.get(GRPC_CODE_METADATA_KEY)?.[0];
  const field = e.metadata?.get(GRPC_FIELD_METADATA_KEY)?.[0];
  const code =
    typeof meta === 'string' && KNOWN_CODES.has(meta)
      ? (meta as ErrorCode)
      : (FROM_GRPC[e.code as GrpcStatus] ?? ErrorCode.INTERNAL);
  return new SpillwayError(code, e.details ?? e.message ?? 'gRPC call failed', {
    cause: err,
    ...(typeof field === 'string' ? { field } : {}),
  });
}
