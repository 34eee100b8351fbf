// spillctl cordon|uncordon: a donor out of placements and back.
import type { Context } from '../context.js';
import { renderData, type OutputFormat } from '../output.js';

export async function cmdCordon(
  ctx: Context,
  cluster: string,
  cordoned: boolean,
  output: OutputFormat,
): Promise<void> {
  const view = await ctx.rest.patchCluster(cluster, { cordoned });
  if (output === 'json' || output === 'yaml') return ctx.out(renderData(view, output));
  ctx.out(
    cordoned
      ? `cluster ${cluster} cordoned: it takes no new placements; running offloads stay\n`
      : `cluster ${cluster} uncordoned\n`,
  );
}
