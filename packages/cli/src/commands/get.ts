// spillctl get clusters|capacity|peerings|offloads.
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';
import {
  CAPACITY_COLUMNS,
  CLUSTER_COLUMNS,
  OFFLOAD_COLUMNS,
  PEERING_COLUMNS,
  render,
  type OutputFormat,
} from '../output.js';

export const RESOURCES = {
  clusters: ['cluster', 'clusters', 'cl'],
  capacity: ['capacity', 'cap'],
  peerings: ['peering', 'peerings', 'peer'],
  offloads: ['offload', 'offloads', 'off'],
} as const;
export type Resource = keyof typeof RESOURCES;
export const RESOURCE_NAMES = Object.values(RESOURCES).flat();

export function resourceOf(word: string): Resource {
  for (const [r, names] of Object.entries(RESOURCES)) {
    if ((names as readonly string[]).includes(word)) return r as Resource;
  }
  throw new UsageError(
    `unknown resource "${word}"; one of: clusters, capacity, peerings, offloads`,
  );
}

export interface GetFlags {
  output: OutputFormat;
  origin?: string;
  donor?: string;
  state?: string;
  gpuProduct?: string;
  resource?: string;
  minGpuMemory?: number;
}

const GET_FLAGS: Record<Resource, (keyof GetFlags)[]> = {
  clusters: [],
  capacity: ['gpuProduct', 'origin', 'resource', 'minGpuMemory'],
  peerings: ['origin', 'donor'],
  offloads: ['origin', 'donor', 'state'],
};

const FLAG_NAMES: Partial<Record<keyof GetFlags, string>> = {
  origin: '--origin',
  donor: '--donor',
  state: '--state',
  gpuProduct: '--gpu-product',
  resource: '--resource',
  minGpuMemory: '--min-gpu-memory',
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
  if (name !== undefined && resource !== 'clusters') {
    throw new UsageError(
      `"get ${resource}" takes no name; filter with ${GET_FLAGS[resource].map((k) => FLAG_NAMES[k]).join(', ')}`,
    );
  }
  switch (resource) {
    case 'clusters': {
      if (name !== undefined) {
        const c = await ctx.rest.getCluster(name);
        return ctx.out(render(f.output, c, [c], CLUSTER_COLUMNS));
      }
      const data = await ctx.rest.listClusters();
      return ctx.out(
        render(f.output, data, data.clusters, CLUSTER_COLUMNS, 'No clusters have joined.'),
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
      let text = render(f.output, data, data.rows, CAPACITY_COLUMNS, 'No GPUs are reported.');
      if (f.output === 'table' || f.output === 'wide') {
        text += `\nTotal: ${data.totals.free} free of ${data.totals.allocatable} GPUs\n`;
      }
      return ctx.out(text);
    }
    case 'peerings': {
      const data = await ctx.rest.listPeerings(defined({ origin: f.origin, donor: f.donor }));
      return ctx.out(render(f.output, data, data.peerings, PEERING_COLUMNS, 'No peerings.'));
    }
    case 'offloads': {
      const data = await ctx.rest.offloads(
        defined({ origin: f.origin, donor: f.donor, state: f.state }),
      );
      return ctx.out(render(f.output, data, data.offloads, OFFLOAD_COLUMNS, 'No offloads.'));
    }
  }
}

function defined<T extends Record<string, string | undefined>>(o: T): Record<string, string> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Record<
    string,
    string
  >;
}
