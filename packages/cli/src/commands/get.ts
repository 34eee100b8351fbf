// spillctl get clusters|capacity|peerings|offloads|usage.
import { parseDuration } from '@spillway/common';
import { USAGE_KEYS, usageCsv, type UsageKey } from '@spillway/api/rest';
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';
import {
  CAPACITY_COLUMNS,
  CLUSTER_COLUMNS,
  OFFLOAD_COLUMNS,
  PEERING_COLUMNS,
  render,
  usageColumns,
  type GetOutputFormat,
} from '../output.js';

export const RESOURCES = {
  clusters: ['cluster', 'clusters', 'cl'],
  capacity: ['capacity', 'cap'],
  peerings: ['peering', 'peerings', 'peer'],
  offloads: ['offload', 'offloads', 'off'],
  usage: ['usage'],
} as const;
export type Resource = keyof typeof RESOURCES;
export const RESOURCE_NAMES = Object.values(RESOURCES).flat();

export function resourceOf(word: string): Resource {
  for (const [r, names] of Object.entries(RESOURCES)) {
    if ((names as readonly string[]).includes(word)) return r as Resource;
  }
  throw new UsageError(
    `unknown resource "${word}"; one of: clusters, capacity, peerings, offloads, usage`,
  );
}

export interface GetFlags {
  output: GetOutputFormat;
  origin?: string;
  donor?: string;
  state?: string;
  gpuProduct?: string;
  resource?: string;
  minGpuMemory?: number;
  since?: string;
  until?: string;
  by?: string;
}

const GET_FLAGS: Record<Resource, (keyof GetFlags)[]> = {
  clusters: [],
  capacity: ['gpuProduct', 'origin', 'resource', 'minGpuMemory'],
  peerings: ['origin', 'donor'],
  offloads: ['origin', 'donor', 'state'],
  usage: ['since', 'until', 'by'],
};

const FLAG_NAMES: Partial<Record<keyof GetFlags, string>> = {
  origin: '--origin',
  donor: '--donor',
  state: '--state',
  gpuProduct: '--gpu-product',
  resource: '--resource',
  minGpuMemory: '--min-gpu-memory',
  since: '--since',
  until: '--until',
  by: '--by',
};

export async function cmdGet(
  ctx: Context,
  word: string,
  name: string | undefined,
  f: GetFlags,
): Promise<void> {
  const resource = resourceOf(word);
  for (const [k, flag] of Object.entries(FLAG_NAMES)) {
    if (
      f[k as keyof GetFlags] !== undefined &&
      !GET_FLAGS[resource].includes(k as keyof GetFlags)
    ) {
      throw new UsageError(`${flag} does not apply to "get ${resource}"`, flag);
    }
  }
  if (f.output === 'csv' && resource !== 'usage') {
    throw new UsageError(`-o csv applies to "get usage" only`, '--output');
  }
  if (name !== undefined && resource !== 'clusters') {
    throw new UsageError(
      `"get ${resource}" takes no name; filter with ${GET_FLAGS[resource].map((k) => FLAG_NAMES[k]).join(', ')}`,
    );
  }
  if (resource === 'usage') return getUsage(ctx, f);
  const output = f.output === 'csv' ? 'table' : f.output;
  switch (resource) {
    case 'clusters': {
      if (name !== undefined) {
        const c = await ctx.rest.getCluster(name);
        return ctx.out(render(output, c, [c], CLUSTER_COLUMNS));
      }
      const data = await ctx.rest.listClusters();
      return ctx.out(
        render(output, data, data.clusters, CLUSTER_COLUMNS, 'No clusters have joined.'),
      );
    }
    case 'capacity': {
      const data = await ctx.rest.capacity(
        defined({
          gpuProduct: f.gpuProduct,
          origin: f.origin,
          resource: f.resource,
          minGpuMemoryMiB: f.minGpuMemory === undefined ? undefined : String(f.minGpuMemory),
        }),
      );
      let text = render(output, data, data.rows, CAPACITY_COLUMNS, 'No GPUs are reported.');
      if (output === 'table' || output === 'wide') {
        text += `\nTotal: ${data.totals.free} free of ${data.totals.allocatable} GPUs\n`;
      }
      return ctx.out(text);
    }
    case 'peerings': {
      const data = await ctx.rest.listPeerings(defined({ origin: f.origin, donor: f.donor }));
      return ctx.out(render(output, data, data.peerings, PEERING_COLUMNS, 'No peerings.'));
    }
    case 'offloads': {
      const data = await ctx.rest.offloads(
        defined({ origin: f.origin, donor: f.donor, state: f.state }),
      );
      return ctx.out(render(output, data, data.offloads, OFFLOAD_COLUMNS, 'No offloads.'));
    }
  }
}

/**
 * --since/--until: a duration back from now (24h, 7d... as the broker's durations) or an
 * RFC 3339 time, sent as RFC 3339; the broker checks the rest (from before to).
 */
export function usageTime(value: string, flag: string, now = Date.now()): string {
  if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
    if (Number.isNaN(Date.parse(value))) {
      throw new UsageError(`${flag}: ${JSON.stringify(value)} is not a valid RFC 3339 time`, flag);
    }
    return value;
  }
  let ms: number;
  try {
    ms = parseDuration(value, flag);
  } catch {
    throw new UsageError(
      `${flag}: expected a duration back from now (24h, 30m) or an RFC 3339 time, not ${JSON.stringify(value)}`,
      flag,
    );
  }
  return new Date(now - ms).toISOString();
}

export function usageKeys(value: string): UsageKey[] {
  const keys = value.split(',').map((k) => k.trim());
  for (const k of keys) {
    if (!(USAGE_KEYS as readonly string[]).includes(k)) {
      throw new UsageError(`--by: "${k}" is not one of ${USAGE_KEYS.join(', ')}`, '--by');
    }
  }
  return keys as UsageKey[];
}

async function getUsage(ctx: Context, f: GetFlags): Promise<void> {
  const by = f.by === undefined ? (['origin', 'donor'] as UsageKey[]) : usageKeys(f.by);
  const report = await ctx.rest.usage(
    defined({
      from: f.since === undefined ? undefined : usageTime(f.since, '--since'),
      to: f.until === undefined ? undefined : usageTime(f.until, '--until'),
      by: by.join(','),
    }),
  );
  if (f.output === 'csv') return ctx.out(usageCsv(report));
  let text = render(f.output, report, report.rows, usageColumns(report.by), 'No GPU use recorded.');
  if ((f.output === 'table' || f.output === 'wide') && report.rows.length > 0) {
    text += `\nTotal: ${report.total.gpuHours.toFixed(3)} GPU-hours by ${report.total.pods} pods, ${report.from} to ${report.to}\n`;
  }
  return ctx.out(text);
}

function defined<T extends Record<string, string | undefined>>(o: T): Record<string, string> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Record<
    string,
    string
  >;
}
