import type { Peering__Output } from '@spillway/api';

/**
 * What the shim knows of one donor peered with this origin, from the broker's PeeringState.
 * Pure data: the registry keeps these, the forge functions read them.
 */
export interface DonorView {
  donor: string;
  /** The broker's view of the donor: Ready, NotReady, Cordoned, Pending, Revoked. */
  state: string;
  /** GPUs the donor lends this origin right now, by resource name. */
  lendable: Record<string, number>;
  /** GPUs this origin's pods use on the donor, by resource name. */
  inUse: Record<string, number>;
  /** GPU products on the donor's eligible nodes that this peering may use. */
  products: string[];
  maxGpus: number;
  /** The peering is being removed: no new pods. */
  deleting: boolean;
}

function toCounts(m: Record<string, string> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(m ?? {})) {
    const n = Number(v);
    if (Number.isFinite(n) && n >= 0) out[k] = Math.floor(n);
  }
  return out;
}

/** A Peering from the broker → DonorView. Products are narrowed by the peering's own list. */
export function donorViewOf(p: Peering__Output): DonorView {
  const allowed = new Set(p.gpu_products ?? []);
  const products = [...new Set(p.donor_gpu_products ?? [])]
    .filter((x) => x !== '' && (allowed.size === 0 || allowed.has(x)))
    .sort();
  return {
    donor: p.donor_cluster,
    state: p.donor_state || 'Pending',
    lendable: toCounts(p.lendable),
    inUse: toCounts(p.in_use),
    products,
    maxGpus: p.max_gpus ?? 0,
    deleting: (p.deleting_since ?? '') !== '',
  };
}

/** Whether a donor can take new pods and run the ones it has (as far as the broker knows). */
export function donorUsable(state: string): boolean {
  return state === 'Ready' || state === 'Cordoned';
}

export interface DonorHealth {
  /** The virtual node's Ready condition. */
  ready: boolean;
  reason: string;
  message: string;
  /** The donor is unreachable right now (perhaps not yet for long enough to be NotReady). */
  unreachable: boolean;
  /** When an unreachable donor's node turns NotReady (ms since epoch). */
  notReadyAt?: number;
}

/**
 * The virtual node's health: Ready while the donor is reachable through the broker; after
 * it has been unreachable for `lostTimeoutMs`, NotReady, so Kubernetes' node lifecycle
 * evicts its pods the way it would for a real node.
 */
export function donorHealth(
  view: DonorView,
  opts: { brokerConnected: boolean; lostSinceMs: number | undefined; lostTimeoutMs: number },
  nowMs: number,
): DonorHealth {
  const unreachable = !opts.brokerConnected || !donorUsable(view.state);
  if (!unreachable) {
    return {
      ready: true,
      reason: view.state === 'Cordoned' ? 'DonorCordoned' : 'DonorReady',
      message:
        view.state === 'Cordoned'
          ? `donor ${view.donor} is cordoned: its pods keep running, new pods go elsewhere`
          : `donor ${view.donor} is connected through the broker`,
      unreachable: false,
    };
  }
  const why = !opts.brokerConnected
    ? 'the broker is unreachable'
    : `the broker reports donor ${view.donor} ${view.state}`;
  const since = opts.lostSinceMs ?? nowMs;
  const at = since + opts.lostTimeoutMs;
  if (nowMs < at) {
    return {
      ready: true,
      reason: 'DonorUnreachable',
      message: `${why} since ${new Date(since).toISOString()}; the node turns NotReady at ${new Date(at).toISOString()}`,
      unreachable: true,
      notReadyAt: at,
    };
  }
  return {
    ready: false,
    reason: !opts.brokerConnected ? 'BrokerUnreachable' : 'DonorNotReady',
    message: `${why} since ${new Date(since).toISOString()}`,
    unreachable: true,
  };
}
