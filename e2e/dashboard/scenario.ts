// The fleet the browser test and the screenshots share: two donors of three GPU products,
// one node NotReady, and offloads in each phase.
import { startDashboardFleet, type DashboardFleet } from './fleet.js';

export const H100 = 'NVIDIA-H100-80GB-HBM3';
export const A100 = 'NVIDIA-A100-SXM4-80GB';
export const L4 = 'NVIDIA-L4';

export async function startScenario(): Promise<DashboardFleet> {
  return startDashboardFleet([
    {
      id: 'gpu-east',
      maxGpus: 12,
      nodes: [
        { name: 'east-h100-0', product: H100, gpus: 8, free: 6 },
        { name: 'east-h100-1', product: H100, gpus: 8, free: 8 },
        { name: 'east-a100-0', product: A100, gpus: 4, free: 1 },
      ],
    },
    {
      id: 'gpu-west',
      gpuProducts: [L4],
      nodes: [
        { name: 'west-l4-0', product: L4, gpus: 4, free: 4 },
        { name: 'west-l4-1', product: L4, gpus: 4, free: 2 },
        { name: 'west-l4-2', product: L4, gpus: 4, free: 4, ready: false },
      ],
    },
  ]);
}

/** A running guest, a pod whose GPUs are reserved but not yet started, one released. */
export async function addOffloads(fleet: DashboardFleet): Promise<void> {
  const east = fleet.donors.get('gpu-east')!;
  const running = { namespace: 'ml-team', name: 'train-llama-0', uid: 'uid-train-0' };
  await fleet.place(running, 2, H100);
  const node = (
    await fleet.broker.rest<{ offloads: { node: string; pod: { uid: string } }[] }>(
      'GET',
      '/api/v1/offloads',
    )
  ).offloads.find((o) => o.pod.uid === running.uid)!.node;
  const before = east.nodes.get(node)!;
  await east.update({ name: node, free: before.free - 2, offloaded: [running.uid] });
  east.podStatus({ origin_cluster: fleet.origin.id, ...running }, node, 'Running');

  await fleet.place({ namespace: 'ml-team', name: 'eval-bert-7f9c2', uid: 'uid-eval-1' }, 1, L4);
  const done = await fleet.place(
    { namespace: 'research', name: 'sweep-3', uid: 'uid-sweep-3' },
    1,
    H100,
  );
  await fleet.release(done, 'origin pod deleted');
}
