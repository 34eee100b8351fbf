import * as grpc from '@grpc/grpc-js';
import {
  ErrorCode,
  GRPC_CODE_METADATA_KEY,
  GRPC_FIELD_METADATA_KEY,
  SpillwayError,
  fromGrpcError,
  toGrpcError,
  type Logger,
} from '@spillway/common';

/** A status grpc-js can send: code, details, and the Spillway code/field as metadata. */
export function toServiceError(err: unknown): Partial<grpc.StatusObject> & { code: grpc.status } {
  const p = toGrpcError(err);
  const metadata = new grpc.Metadata();
  metadata.set(GRPC_CODE_METADATA_KEY, p.spillwayCode);
  // A field can name a key the client sent, and metadata values must be printable ASCII:
  // grpc-js throws on anything else, and the status would never be sent.
  if (p.field !== undefined)
    metadata.set(
      GRPC_FIELD_METADATA_KEY,
      p.field.replace(/[^ -~]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
    );
  return { code: p.code, details: p.details, metadata };
}

/** Logs at a level that matches whose fault it was: ours (error) or the caller's (debug). */
export function logFailure(logger: Logger, err: unknown, msg: string, bindings: object = {}): void {
  const code = err instanceof SpillwayError ? err.code : ErrorCode.INTERNAL;
  if (code === ErrorCode.INTERNAL) logger.error({ err, ...bindings }, msg);
  else if (code === ErrorCode.STORE_UNAVAILABLE || code === ErrorCode.UNAVAILABLE)
    logger.warn({ err, ...bindings }, msg);
  else logger.debug({ err: { code, message: (err as Error).message }, ...bindings }, msg);
}

/** A donor's CommandResult as an error: its stable reason if known, else its gRPC code. */
export function commandResultError(
  code: number,
  message: string,
  reason: string,
  donor: string,
): SpillwayError {
  const e = fromGrpcError({
    code,
    details: message || `donor ${donor} refused the command`,
    metadata: { get: (k: string) => (k === GRPC_CODE_METADATA_KEY && reason ? [reason] : []) },
  });
  return new SpillwayError(e.code, `donor ${donor}: ${e.message}`);
}

/** Marker the safe deserializer returns instead of throwing on a malformed message. */
export const MALFORMED = Symbol('malformed');
export interface Malformed {
  [MALFORMED]: string;
}

export function isMalformed(v: unknown): v is Malformed {
  return typeof v === 'object' && v !== null && MALFORMED in v;
}

/**
 * grpc-js answers a message it cannot decode with INTERNAL; a bad message is the caller's
 * fault, so decode failures are handed to the handler, which answers INVALID_ARGUMENT.
 */
export function safeService<T extends grpc.ServiceDefinition>(service: T): T {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, def] of Object.entries(service) as [
    string,
    grpc.MethodDefinition<unknown, unknown>,
  ][]) {
    out[name] = {
      ...def,
      requestDeserialize: (buf: Buffer): unknown => {
        try {
          return def.requestDeserialize(buf);
        } catch (err) {
          return {
            [MALFORMED]: err instanceof Error ? err.message : String(err),
          } satisfies Malformed;
        }
      },
    };
  }
  return out as unknown as T;
}

export function malformedError(m: Malformed, what: string): SpillwayError {
  return new SpillwayError(
    ErrorCode.INVALID_ARGUMENT,
    `${what}: not a valid protobuf message (${m[MALFORMED]})`,
    {
      field: what,
    },
  );
}
