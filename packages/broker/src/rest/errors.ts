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

export function makeErrorHandler(logger: Logger, bodyLimit: number) {
  return (err: unknown, req: FastifyRequest, reply: FastifyReply): void => {
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
  };
}
