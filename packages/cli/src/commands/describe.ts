// spillctl describe cluster.
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';
import { describeCluster, renderData, type OutputFormat } from '../output.js';

export async function cmdDescribe(
  ctx: Context,
  kind: string,
  name: string,
  output: OutputFormat,
): Promise<void> {
  if (kind !== 'cluster' && kind !== 'clusters' && kind !== 'cl') {
    throw new UsageError(`cannot describe "${kind}"; only: cluster`);
  }
  const c = await ctx.rest.getCluster(name);
  ctx.out(output === 'json' || output === 'yaml' ? renderData(c, output) : describeCluster(c));
}
