import type { FastifyInstance } from 'fastify';
import type { UsageQuery, UsageReport } from '@spillway/api/rest';
import type { BrokerCore } from '../core/api.js';
import { USAGE_KEYS, usageCsv } from '../core/usage.js';

const keyList = `(${USAGE_KEYS.join('|')})`;

export const usageQuery = {
  type: 'object',
  properties: {
    from: { type: 'string', description: 'RFC 3339 start (inclusive); default the ledger start' },
    to: { type: 'string', description: 'RFC 3339 end (exclusive); default now' },
    by: {
      type: 'string',
      pattern: `^(${keyList}(,${keyList})*)?$`,
      description: `Comma-separated keys to group by: ${USAGE_KEYS.join(', ')}`,
    },
    step: {
      type: 'string',
      description:
        'A duration (1h, 6h, 1d): one row per group and bucket of this length from `from`',
    },
    format: { type: 'string', enum: ['json', 'csv'], description: 'csv: text/csv' },
  },
  additionalProperties: false,
} as const;

const usageRow = {
  type: 'object',
  properties: {
    start: { type: 'string', format: 'date-time' },
    ...Object.fromEntries(USAGE_KEYS.map((k) => [k, { type: 'string' }])),
    gpuSeconds: { type: 'number' },
    gpuHours: { type: 'number' },
    pods: { type: 'integer' },
  },
  required: ['gpuSeconds', 'gpuHours', 'pods'],
} as const;

export const usageReportSchema = {
  type: 'object',
  properties: {
    from: { type: 'string', format: 'date-time' },
    to: { type: 'string', format: 'date-time' },
    by: { type: 'array', items: { type: 'string', enum: [...USAGE_KEYS] } },
    stepMs: { type: 'integer' },
    rows: { type: 'array', items: usageRow },
    total: {
      type: 'object',
      properties: {
        gpuSeconds: { type: 'number' },
        gpuHours: { type: 'number' },
        pods: { type: 'integer' },
      },
      required: ['gpuSeconds', 'gpuHours', 'pods'],
    },
  },
  required: ['from', 'to', 'by', 'rows', 'total'],
} as const;

/** Whether the caller asked for CSV: `format=csv`, or Accept naming text/csv before JSON. */
export function wantsCsv(format: string | undefined, accept: string | undefined): boolean {
  if (format !== undefined) return format === 'csv';
  if (!accept) return false;
  const csv = accept.indexOf('text/csv');
  const json = accept.indexOf('application/json');
  return csv >= 0 && (json < 0 || csv < json);
}

/** GET /api/v1/usage: the usage ledger, summed over a window and grouped. */
export function usageRoutes(
  api: FastifyInstance,
  core: BrokerCore,
  security: readonly Record<string, string[]>[],
  prefix: string,
): void {
  api.get<{ Querystring: UsageQuery; Reply: UsageReport | string }>(
    `${prefix}/usage`,
    {
      schema: {
        summary: 'GPU-seconds lent, from the usage ledger, over a window and grouped',
        description:
          'Every offloaded pod counts its GPUs from the moment the donor reported it bound to its end; ' +
          'running pods count up to now. JSON by default; CSV with format=csv or Accept: text/csv.',
        tags: ['usage'],
        security: [...security],
        querystring: usageQuery,
        response: {
          200: {
            description: 'The usage report',
            content: {
              'application/json': { schema: usageReportSchema },
              'text/csv': { schema: { type: 'string' } },
            },
          },
        },
      },
    },
    async (req, reply) => {
      const { format, ...query } = req.query;
      const report = await core.usage(query);
      if (wantsCsv(format, req.headers.accept)) {
        return reply.header('content-type', 'text/csv; charset=utf-8').send(usageCsv(report));
      }
      return report;
    },
  );
}
