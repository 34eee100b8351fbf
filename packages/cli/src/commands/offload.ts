// spillctl offload namespace: opt a namespace of the origin in to offloading.
import type { Context } from '../context.js';
import { kubeConfigFor, serverOf, setNamespaceOffload } from '../kube.js';

export async function cmdOffloadNamespace(
  ctx: Context,
  namespace: string,
  disable: boolean,
): Promise<void> {
  const kc = kubeConfigFor(ctx.globals);
  await setNamespaceOffload(kc, namespace, !disable);
  ctx.out(
    disable
      ? `namespace ${namespace} no longer offloads pending GPU pods (${serverOf(kc)})\n`
      : `namespace ${namespace} offloads pending GPU pods to peered donors (label spillway.io/offload=enabled, ${serverOf(kc)})\n`,
  );
}
