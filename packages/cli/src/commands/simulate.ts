// spillctl simulate: where a GPU pod would be placed, and why not elsewhere.
import type { Context } from '../context.js';
import { renderSimulation, type OutputFormat } from '../output.js';

export interface SimulateFlags {
  origin: string;
  gpus: number;
  gpuProduct?: string;
  resource: string;
  selector?: Record<string, string>;
  donor?: string[];
  policy?: 'binpack' | 'spread' | 'cost';
  output: OutputFormat;
}

export async function cmdSimulate(ctx: Context, f: SimulateFlags): Promise<void> {
  const nodeSelector = {
    ...(f.selector ?? {}),
    ...(f.gpuProduct ? { 'nvidia.com/gpu.product': f.gpuProduct } : {}),
  };
  const result = await ctx.rest.simulate({
    origin: f.origin,
    gpus: f.gpus,
    resource: f.resource,
    ...(Object.keys(nodeSelector).length ? { nodeSelector } : {}),
    ...(f.donor?.length ? { donors: f.donor } : {}),
    ...(f.policy ? { policy: f.policy } : {}),
  });
  ctx.out(renderSimulation(result, f.output));
}
