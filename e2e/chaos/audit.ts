// What must hold after every fault, read from the clusters and the broker as they are.
//
// Always (also in the middle of a fault):
//   - no origin pod has more than one live remote copy, over all donors;
//   - no donor node is promised more GPUs than it has: the open and bound reservations on
//     it, and the GPUs of the pods that actually hold it (non-terminal, deleting included,
//     as a kubelet counts them), each stay within its GPUs.
// Once things have settled:
//   - no orphan: every remote copy belongs to a live origin pod bound to that donor's
//     virtual node, every live reservation to a live origin pod, and no reservation is
//     left open;
//   - every Running offloaded origin pod has its one remote copy and a bound reservation.
import type { V1Pod } from '@kubernetes/client-node';
import {
  ANNOTATION_REMOTE_POD,
  LABEL_ORIGIN_UID,
  isTerminalPhase,
  tenantNamespace,
} from '@spillway/common';
import { poll } from '../testbed/index.js';
import type { ChaosBed } from './bed.js';

export interface Reservation {
  id: string;
  donor: string;
  node: string;
  gpus: number;
  state: string;
  pod: { uid: string; namespace: string; name: string };
}

export interface Snapshot {
  at: number;
  origin: V1Pod[];
  /** Remote pods of this origin, by donor (donors whose API server is down are absent). */
  remote: Map<string, V1Pod[]>;
  /** Every pod on each donor, for what holds its nodes. */
  donorPods: Map<string, V1Pod[]>;
  /** Live reservations; undefined while no broker answers. */
  reservations: Reservation[] | undefined;
}

const live = (p: V1Pod): boolean => !p.metadata?.deletionTimestamp;
const uidOf = (p: V1Pod): string => p.metadata?.uid ?? '';
const nameOf = (p: V1Pod): string => `${p.metadata?.namespace ?? ''}/${p.metadata?.name ?? ''}`;

function gpusOf(p: V1Pod): number {
  let n = 0;
  for (const c of p.spec?.containers ?? []) {
    const v = c.resources?.limits?.['nvidia.com/gpu'] ?? c.resources?.requests?.['nvidia.com/gpu'];
    n += Number(v ?? 0);
  }
  return n;
}

export async function snapshot(bed: ChaosBed, skipDonors: string[] = []): Promise<Snapshot> {
  const at = Date.now();
  const originList = await bed.origin.core.listNamespacedPod({ namespace: bed.workNamespace });
  const remote = new Map<string, V1Pod[]>();
  const donorPods = new Map<string, V1Pod[]>();
  await Promise.all(
    bed.donorNames
      .filter((d) => !skipDonors.includes(d))
      .map(async (d) => {
        const all = await bed
          .donor(d)
          .core.listPodForAllNamespaces({ timeoutSeconds: 10 })
          .catch(() => undefined);
        if (!all) return;
        donorPods.set(d, all.items);
        remote.set(
          d,
          all.items.filter((p) => p.metadata?.namespace === tenantNamespace('origin')),
        );
      }),
  );
  const res = (await bed.api('GET', '/api/v1/offloads?state=open,bound').catch(() => undefined)) as
    { offloads: Reservation[] } | undefined;
  return { at, origin: originList.items, remote, donorPods, reservations: res?.offloads };
}

/** Violations of what must hold at every moment. */
export function hardViolations(bed: ChaosBed, s: Snapshot): string[] {
  const out: string[] = [];
  const copies = new Map<string, string[]>();
  for (const [donor, pods] of s.remote) {
    for (const p of pods.filter(live)) {
      const uid = p.metadata?.labels?.[LABEL_ORIGIN_UID] ?? '';
      copies.set(uid, [...(copies.get(uid) ?? []), `${donor}:${nameOf(p)}`]);
    }
  }
  for (const [uid, where] of copies) {
    if (where.length > 1)
      out.push(`origin pod ${uid} has ${where.length} remote copies: ${where.join(', ')}`);
  }
  if (s.reservations) {
    const held = new Map<string, number>();
    const perPod = new Map<string, number>();
    for (const r of s.reservations) {
      const k = `${r.donor}/${r.node}`;
      held.set(k, (held.get(k) ?? 0) + r.gpus);
      perPod.set(r.pod.uid, (perPod.get(r.pod.uid) ?? 0) + 1);
    }
    for (const [k, gpus] of held) {
      const [donor, node] = k.split('/');
      const cap = bed.capacity[donor!]?.[node!] ?? 0;
      if (gpus > cap) out.push(`reservations promise ${gpus} GPUs on ${k}, which has ${cap}`);
    }
    for (const [uid, n] of perPod) if (n > 1) out.push(`pod ${uid} has ${n} live reservations`);
  }
  for (const [donor, pods] of s.donorPods) {
    const used = new Map<string, number>();
    for (const p of pods) {
      const node = p.spec?.nodeName;
      if (!node || isTerminalPhase(p.status?.phase)) continue;
      used.set(node, (used.get(node) ?? 0) + gpusOf(p));
    }
    for (const [node, gpus] of used) {
      const cap = bed.capacity[donor]?.[node] ?? 0;
      if (gpus > cap) out.push(`pods hold ${gpus} GPUs on ${donor}/${node}, which has ${cap}`);
    }
  }
  return out;
}

/** What is left behind that should not be, once nothing is in flight any more. */
export function orphans(bed: ChaosBed, s: Snapshot): string[] {
  const out: string[] = [];
  const originByUid = new Map(s.origin.map((p) => [uidOf(p), p]));
  for (const [donor, pods] of s.remote) {
    for (const p of pods) {
      const uid = p.metadata?.labels?.[LABEL_ORIGIN_UID] ?? '';
      const o = originByUid.get(uid);
      const wanted =
        o !== undefined &&
        live(o) &&
        o.spec?.nodeName === `spillway-${donor}` &&
        !(isTerminalPhase(o.status?.phase) && !isTerminalPhase(p.status?.phase));
      if (!wanted)
        out.push(
          `remote pod ${donor}:${nameOf(p)} (origin uid ${uid}) has no origin pod that wants it`,
        );
    }
  }
  for (const r of s.reservations ?? []) {
    const o = originByUid.get(r.pod.uid);
    if (!o || !live(o))
      out.push(
        `reservation ${r.id} (${r.state}) on ${r.donor}/${r.node} is for a pod that is gone`,
      );
    else if (r.state === 'open') out.push(`reservation ${r.id} for ${r.pod.name} still open`);
  }
  for (const o of s.origin) {
    const node = o.spec?.nodeName ?? '';
    if (!node.startsWith('spillway-') || o.status?.phase !== 'Running' || !live(o)) continue;
    const donor = node.slice('spillway-'.length);
    const copies = (s.remote.get(donor) ?? []).filter(
      (p) => p.metadata?.labels?.[LABEL_ORIGIN_UID] === uidOf(o) && live(p),
    );
    if (s.remote.has(donor) && copies.length !== 1)
      out.push(`origin pod ${nameOf(o)} Running on ${node} has ${copies.length} remote copies`);
    const annotated = o.metadata?.annotations?.[ANNOTATION_REMOTE_POD];
    if (!annotated)
      out.push(`origin pod ${nameOf(o)} Running on ${node} has no remote-pod annotation`);
    if (
      s.reservations &&
      !s.reservations.some((r) => r.pod.uid === uidOf(o) && r.state === 'bound')
    )
      out.push(`origin pod ${nameOf(o)} Running on ${node} has no bound reservation`);
  }
  return out;
}

/** The pods of a label selector app=<app>, by phase, live ones only. */
export function phases(s: Snapshot, app: string): Record<string, V1Pod[]> {
  const out: Record<string, V1Pod[]> = {};
  for (const p of s.origin.filter((q) => q.metadata?.labels?.app === app && live(q))) {
    const ph = p.status?.phase ?? 'Unknown';
    (out[ph] ??= []).push(p);
  }
  return out;
}

/**
 * Samples the hard invariants every `intervalMs` until stopped; `stop()` resolves with
 * every violation seen (empty when none).
 */
export function watchInvariants(
  bed: ChaosBed,
  opts: { intervalMs?: number; skipDonors?: () => string[] } = {},
): { stop(): Promise<string[]>; samples(): number } {
  let running = true;
  let n = 0;
  const seen = new Set<string>();
  const loop = (async () => {
    while (running) {
      try {
        const s = await snapshot(bed, opts.skipDonors?.() ?? []);
        for (const v of hardViolations(bed, s)) seen.add(v);
        n++;
      } catch {
        // An API server down for the fault: the next sample reads what it can.
      }
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 1_000));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return [...seen];
    },
    samples: () => n,
  };
}

/**
 * Waits until `ready(snapshot)` holds with no hard violation and no orphan, and returns the
 * snapshot and how long it took. On timeout the message lists what was still wrong.
 */
export async function settle(
  bed: ChaosBed,
  what: string,
  ready: (s: Snapshot) => string | undefined,
  timeoutMs = 90_000,
): Promise<{ snapshot: Snapshot; ms: number }> {
  const t0 = Date.now();
  let last = '';
  try {
    const snap = await poll(
      async () => {
        const s = await snapshot(bed);
        const problems = [
          ...(s.reservations === undefined ? ['the broker does not answer'] : []),
          ...hardViolations(bed, s),
          ...orphans(bed, s),
        ];
        const notYet = ready(s);
        if (notYet) problems.push(notYet);
        last = problems.slice(0, 8).join('; ');
        return problems.length === 0 ? s : undefined;
      },
      { timeoutMs, intervalMs: 500, what },
    );
    return { snapshot: snap, ms: Date.now() - t0 };
  } catch (err) {
    throw new Error(`${(err as Error).message}; still wrong: ${last}`, { cause: err });
  }
}
