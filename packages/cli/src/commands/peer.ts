// spillctl peer: let an origin offload to a donor; --wait for the donor and its virtual node.
import type { PeeringView } from '@spillway/api/rest';
import { virtualNodeName } from '@spillway/common';
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';
import { kubeConfigFor, nodeReady, readVirtualNode } from '../kube.js';
import { renderData, type OutputFormat } from '../output.js';
import { waitFor } from '../wait.js';

export interface PeerFlags {
  maxGpus?: number;
  gpuProduct?: string[];
  wait?: boolean;
  timeout: number;
  output: OutputFormat;
}

export async function findPeering(
  ctx: Context,
  origin: string,
  donor: string,
): Promise<PeeringView | undefined> {
  const { peerings } = await ctx.rest.listPeerings({ origin, donor });
  return peerings.find((p) => p.origin === origin && p.donor === donor);
}

export async function cmdPeer(
  ctx: Context,
  origin: string,
  donor: string,
  f: PeerFlags,
): Promise<void> {
  if (origin === donor) throw new UsageError('a cluster cannot peer with itself');
  const before = await findPeering(ctx, origin, donor);
  let view = await ctx.rest.createPeering({
    origin,
    donor,
    ...(f.maxGpus !== undefined ? { maxGpus: f.maxGpus } : {}),
    ...(f.gpuProduct ? { gpuProducts: f.gpuProduct } : {}),
  });
  if (f.wait) {
    const progress = ctx.progress();
    try {
      progress.update(`waiting for donor ${donor} to be Ready`);
      view = await waitFor(
        async () => {
          const p = await findPeering(ctx, origin, donor);
          return p?.donorState === 'Ready' ? p : undefined;
        },
        { timeoutMs: f.timeout, what: `donor ${donor} to be Ready`, signal: ctx.io.interrupted },
      );
      progress.done(`donor ${donor} is Ready and lends ${lendableText(view)}`);
      // The virtual node lives in the origin: check it only when we can see the origin.
      if (ctx.globals.kubeconfig || ctx.io.env.KUBECONFIG) {
        const kc = kubeConfigFor(ctx.globals);
        progress.update(
          `waiting for virtual node ${virtualNodeName(donor)} in ${origin} to be Ready`,
        );
        await waitFor(
          async () => (nodeReady(await readVirtualNode(kc, donor)) ? true : undefined),
          {
            timeoutMs: f.timeout,
            what: `virtual node ${virtualNodeName(donor)} in ${origin} to be Ready`,
            signal: ctx.io.interrupted,
          },
        );
        progress.done(`virtual node ${virtualNodeName(donor)} is Ready in ${origin}`);
      }
    } finally {
      progress.stop();
    }
  }
  if (f.output === 'json' || f.output === 'yaml') return ctx.out(renderData(view, f.output));
  ctx.out(`peering ${origin} -> ${donor} ${before ? 'updated' : 'created'}\n`);
}

function lendableText(p: PeeringView): string {
  const e = Object.entries(p.lendable);
  return e.length ? e.map(([r, n]) => `${n} ${r}`).join(', ') : 'no GPUs right now';
}
