// spillctl token create: a REST API token, printed once.
import type { Context } from '../context.js';
import { renderData, type OutputFormat } from '../output.js';

export async function cmdTokenCreate(
  ctx: Context,
  role: 'admin' | 'viewer',
  description: string | undefined,
  output: OutputFormat,
): Promise<void> {
  const t = await ctx.rest.createApiToken({ role, ...(description ? { description } : {}) });
  if (output === 'json' || output === 'yaml') return ctx.out(renderData(t, output));
  ctx.out(`${t.token}\n`);
}
