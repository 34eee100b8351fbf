import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import {
  ErrorCode,
  SpillwayError,
  httpStatusOf,
  isSpillwayError,
  type Logger,
} from '@spillway/common';

/** One ajv error as fastify hands it over (fastify types it loosely). */
interface ValidationIssue {
  keyword: string;
  instancePath?: string;
  params?: Record<string, unknown>;
  message?: string;
}

/** `/requirements/0/key` -> `requirements[0].key`. */
function fieldPath(instancePath: string | undefined, extra?: unknown): string {
  const parts = (instancePath ?? '')
    .split('/')
    .filter((p) => p.length > 0)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (typeof extra === 'string') parts.push(extra);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}

/** Turns fastify's schema validation failure into INVALID_ARGUMENT naming the field. */
export function validationError(
  issues: readonly ValidationIssue[],
  context: string | undefined,
): SpillwayError {
  const where = context === 'querystring' ? 'query' : (context ?? 'body');
  const issue = issues[0];
  if (!issue) return new SpillwayError(ErrorCode.INVALID_ARGUMENT, `${where} is invalid`);
  const params = issue.params ?? {};
  let field: string;
  let message: string;
  switch (issue.keyword) {
    case 'additionalProperties':
      field = fieldPath(issue.instancePath, params.additionalProperty);
      message = `${field}: unknown field in ${where}`;
      break;
    case 'required':
      field = fieldPath(issue.instancePath, params.missingProperty);
      message = `${field}: required in ${where}`;
      break;
    case 'enum': {
      field = fieldPath(issue.instancePath);
      const allowed = Array.isArray(params.allowedValues) ? params.allowedValues.join(', ') : '';
      message = `${field || where}: must be one of ${allowed}`;
      break;
    }
    case 'minProperties':
      field = fieldPath(issue.instancePath) || where;
      message = `${field}: give at least one field to change`;
      break;
    default:
      field = fieldPath(issue.instancePath);
      message = `${field || where}: ${issue.message ?? 'is invalid'}`;
  }
  return new SpillwayError(ErrorCode.INVALID_ARGUMENT, message, { field: field || where });
}

export interface ErrorBody {
  error: { code: string; message: string; field?: string; details?: Record<string, unknown> };
}

/** Maps anything a route threw to one status and `{ error: { code, message, field } }`. */
export function toHttpError(
  err: unknown,
  bodyLimit: number,
): { status: number; error: SpillwayError } {
  if (isSpillwayError(err)) return { status: httpStatusOf(err), error: err };
  const fe = err as Partial<FastifyError> & { validation?: ValidationIssue[] };
  if (Array.isArray(fe.validation)) {
    return { status: 400, error: validationError(fe.validation, fe.validationContext) };
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return {
        status: 400,
        error: new SpillwayError(ErrorCode.INVALID_ARGUMENT, 'body is not valid JSON', {
          field: 'body',
        }),
      };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return {
        status: 400,
        error: new SpillwayError(
          ErrorCode.INVALID_ARGUMENT,
          'body is empty but Content-Type is application/json',
          { field: 'body' },
        ),
      };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        status: 413,
        error: new SpillwayError(
          ErrorCode.PAYLOAD_TOO_LARGE,
          `body is larger than the limit of ${bodyLimit} bytes`,
          { field: 'body' },
        ),
      };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        status: 415,
        error: new SpillwayError(
          ErrorCode.INVALID_ARGUMENT,
          'Content-Type must be application/json',
          { field: 'Content-Type' },
        ),
      };
  }
  // Other client errors fastify raises (bad content length, aborted body ...).
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    return {
      status,
      error: new SpillwayError(ErrorCode.INVALID_ARGUMENT, fe.message ?? 'bad request'),
    };
  }
  return {
    status: 500,
    error: new SpillwayError(ErrorCode.INTERNAL, 'internal error', { cause: err }),
  };
}

/**
 * How much of a refused upload is read and thrown away before the answer goes out. A body
 * refused for its size leaves the connection with unread bytes; closing it then makes the
 * kernel reset it, and a client still writing loses the answer (EPIPE / ECONNRESET instead of
 * 413). Reading the rest first lets the answer and a clean close arrive. Beyond these bounds
 * the client gets the answer on a best-effort basis.
 */
export const DRAIN_LIMIT_BYTES = 16 * 1024 * 1024;
export const DRAIN_TIMEOUT_MS = 5_000;

/** Reads and discards the rest of `req` until it ends, or a bound is reached. */
export function drainRequest(
  req: IncomingMessage,
  limitBytes = DRAIN_LIMIT_BYTES,
  timeoutMs = DRAIN_TIMEOUT_MS,
): Promise<void> {
  if (req.complete || req.readableEnded || req.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    const done = (): void => {
      clearTimeout(timer);
      req.off('data', onData).off('end', done).off('close', done).off('error', done);
      resolve();
    };
    const onData = (chunk: Buffer): void => {
      seen += chunk.length;
      if (seen > limitBytes) done();
    };
    const timer = setTimeout(done, timeoutMs);
    req.on('data', onData).once('end', done).once('close', done).once('error', done);
    req.resume();
  });
}

/** Protocol errors Node's parser reports before a request exists (bad bytes, huge headers). */
export function clientErrorResponse(err: { code?: string }): {
  status: number;
  error: SpillwayError;
} {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return {
        status: 431,
        error: new SpillwayError(
          ErrorCode.PAYLOAD_TOO_LARGE,
          'request headers are larger than the limit of 16384 bytes',
          { field: 'headers' },
        ),
      };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        status: 408,
        error: new SpillwayError(ErrorCode.TIMEOUT, 'the request was not received in time'),
      };
    default:
      return {
        status: 400,
        error: new SpillwayError(
          ErrorCode.INVALID_ARGUMENT,
          `malformed HTTP request${err.code ? ` (${err.code})` : ''}: send HTTP/1.1 with a valid request line, headers and Content-Length`,
        ),
      };
  }
}

/** How long a connection refused at the protocol level may keep sending before it is cut. */
const CLIENT_ERROR_LINGER_MS = 2_000;

/**
 * Answers protocol-level errors with the same `{ error: { code, message } }` body as every
 * other refusal (fastify's default is its own shape), then closes the connection gracefully:
 * FIN after the answer, whatever the client still sends is read and dropped, so the answer is
 * not lost to a reset.
 */
export function makeClientErrorHandler(logger: Logger) {
  const answered = new WeakSet<Socket>();
  return (err: Error & { code?: string }, socket: Socket): void => {
    if (err.code === 'ECONNRESET' || socket.destroyed || answered.has(socket)) return;
    answered.add(socket);
    const { status, error } = clientErrorResponse(err);
    logger.debug({ code: err.code, status }, 'protocol error from a client');
    // An answer already being written for an earlier request on this connection must not be
    // corrupted: then the connection is only closed.
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && !inFlight?.headersSent) {
      const body = JSON.stringify({ error: error.toJSON() } satisfies ErrorBody);
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
          'Content-Type: application/json; charset=utf-8\r\n' +
          `Content-Length: ${Buffer.byteLength(body)}\r\n` +
          'Connection: close\r\n\r\n' +
          body,
      );
    }
    // The HTTP parser is done with this socket; stop it seeing more bytes.
    socket.removeAllListeners('data');
    socket.on('data', () => undefined);
    socket.end();
    const timer = setTimeout(() => socket.destroy(), CLIENT_ERROR_LINGER_MS);
    timer.unref();
    socket.once('end', () => socket.destroy());
    socket.once('close', () => clearTimeout(timer));
    socket.resume();
  };
}

export function makeErrorHandler(logger: Logger, bodyLimit: number) {
  return (err: unknown, req: FastifyRequest, reply: FastifyReply): Promise<void> | void => {
    // fastify closes the connection after a body it refused while reading it; read the rest
    // first, or the close resets the connection under a client still sending (see drainRequest).
    if (reply.getHeader('connection') === 'close' && !req.raw.complete && !req.raw.readableEnded) {
      return drainRequest(req.raw).then(() => send(err, req, reply));
    }
    send(err, req, reply);
  };

  function send(err: unknown, req: FastifyRequest, reply: FastifyReply): void {
    const { status, error } = toHttpError(err, bodyLimit);
    if (status >= 500) {
      logger.error({ err, method: req.method, url: req.url }, 'request failed');
    } else {
      logger.debug({ code: error.code, field: error.field, url: req.url }, 'request refused');
    }
    const retry = error.details?.retryAfterSeconds;
    if (typeof retry === 'number') void reply.header('retry-after', String(retry));
    // Internal failures never show their message; the log has it.
    const body: ErrorBody = {
      error:
        error.code === ErrorCode.INTERNAL
          ? { code: error.code, message: 'internal error' }
          : error.toJSON(),
    };
    void reply.status(status).send(body);
  }
}
