// The work that runs while faults happen: long-running offloaded pods (a Deployment), and
// waves of new GPU pods created just before a fault so that offloads are in flight when it
// hits. Plus the bookkeeping of recovery times the suite prints at the end.
import { AppsV1Api, type V1Pod } from '@kubernetes/client-node';
import { podOutcome } from '../testbed/index.js';
import { orphans, phases, settle, watchInvariants, type Snapshot } from './audit.js';
import type { ChaosBed } from './bed.js';

export function gpuPodSpec(gpus: number, restartPolicy = 'Never'): NonNullable<V1Pod['spec']> {
  return {
    restartPolicy,
    terminationGracePeriodSeconds: 1,
    containers: [
      {
        name: 'train',
        image: 'example.com/spillway/train:1',
        resources: {
          requests: { cpu: '10m', memory: '16Mi', 'nvidia.com/gpu': String(gpus) },
          limits: { 'nvidia.com/gpu': String(gpus) },
        },
      },
    ],
  };
}

/** Creates `n` GPU pods labelled app=<app> that kwok keeps Running, a few at a time. */
export async function createPods(bed: ChaosBed, app: string, n: number, gpus = 1): Promise<void> {
  const names = Array.from({ length: n }, (_, i) => `${app}-${i}`);
  for (let i = 0; i < names.length; i += 20) {
    await Promise.all(
      names.slice(i, i + 20).map((name) =>
        bed.origin.core.createNamespacedPod({
          namespace: bed.workNamespace,
          body: {
            metadata: { name, labels: { app }, annotations: podOutcome('run') },
            spec: gpuPodSpec(gpus),
          },
        }),
      ),
    );
  }
}

export async function createDeployment(
  bed: ChaosBed,
  app: string,
  replicas: number,
  gpus: number,
): Promise<void> {
  await bed.origin.kubeConfig.makeApiClient(AppsV1Api).createNamespacedDeployment({
    namespace: bed.workNamespace,
    body: {
      metadata: { name: app, namespace: bed.workNamespace },
      spec: {
        replicas,
        selector: { matchLabels: { app } },
        template: {
          metadata: { labels: { app }, annotations: podOutcome('run') },
          spec: gpuPodSpec(gpus, 'Always'),
        },
      },
    },
  });
}

/** `n` pods of app Running (offloaded), none Pending; undefined when settled, else why not. */
export function allRunning(app: string, n: number, pending = 0) {
  return (s: Snapshot): string | undefined => {
    const p = phases(s, app);
    const running = (p.Running ?? []).filter((x) => x.spec?.nodeName?.startsWith('spillway-'));
    const waiting = p.Pending ?? [];
    return running.length === n &&
      waiting.length === pending &&
      running.length + waiting.length === n + pending
      ? undefined
      : `${app}: ${running.length}/${n} Running, ${waiting.length}/${pending} Pending (${Object.entries(
          p,
        )
          .map(([k, v]) => `${k} ${v.length}`)
          .join(', ')})`;
  };
}

/** Settle checks joined: the first one not yet met says why. */
export const both =
  (...checks: ((s: Snapshot) => string | undefined)[]) =>
  (s: Snapshot): string | undefined => {
    for (const c of checks) {
      const why = c(s);
      if (why) return why;
    }
    return undefined;
  };

export function uids(pods: readonly V1Pod[] | undefined): string[] {
  return (pods ?? []).map((p) => p.metadata!.uid!).sort();
}

/** The Running pods of app, by uid. */
export function runningUids(s: Snapshot, app: string): string[] {
  return uids(phases(s, app).Running);
}

/** Deletes every pod of app and waits until none is left here or on a donor, and no orphan. */
export async function removeApp(bed: ChaosBed, app: string): Promise<number> {
  await bed.origin.core.deleteCollectionNamespacedPod({
    namespace: bed.workNamespace,
    labelSelector: `app=${app}`,
  });
  const { ms } = await settle(bed, `every ${app} pod gone here and on the donors`, (s) => {
    const here = s.origin.filter((p) => p.metadata?.labels?.app === app).length;
    let there = 0;
    for (const pods of s.remote.values())
      there += pods.filter((p) => p.metadata?.labels?.app === app).length;
    return here + there === 0
      ? undefined
      : `${app}: ${here} origin pods, ${there} remote pods left`;
  });
  return ms;
}

export interface Recovery {
  fault: string;
  /** How long the fault lasted (killed → restarted, link down → up). */
  outageMs: number;
  /** From the end of the fault until everything had converged. */
  recoverMs: number;
  note?: string;
}

export const recoveries: Recovery[] = [];

const s1 = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

export function report(r: Recovery): void {
  recoveries.push(r);
  console.log(
    `CHAOS ${r.fault}: outage ${s1(r.outageMs)}, recovered ${s1(r.recoverMs)} after it ended` +
      (r.note ? ` (${r.note})` : ''),
  );
}

export function printRecoveries(title: string): void {
  if (recoveries.length === 0) return;
  const rows = recoveries.map(
    (r) => `| ${r.fault} | ${s1(r.outageMs)} | ${s1(r.recoverMs)} | ${r.note ?? ''} |`,
  );
  console.log(
    [
      `${title}`,
      '| fault | outage | recovered after | note |',
      '| --- | --- | --- | --- |',
      ...rows,
    ].join('\n'),
  );
}

/** What `inject` tells of the fault it made, once that fault has ended. */
export interface FaultOutcome {
  outageMs: number;
  note?: string;
  /** Awaited once recovered: checks of what recovery had to bring back, and their note. */
  recovered?: () => Promise<string | undefined>;
}

/**
 * One fault, the way every scenario runs it: `app` pods created just before so their
 * offloads are in flight, the invariants sampled throughout, `inject` runs the fault and
 * returns when it has ended (a restart, a link restored) with how long it lasted; then the
 * bed must converge to `expect`, and nothing may have been double-booked or duplicated.
 */
export async function underFault(
  bed: ChaosBed,
  opts: {
    fault: string;
    wave?: { app: string; pods: number; gpus?: number };
    inject: () => Promise<FaultOutcome>;
    expect: (s: Snapshot) => string | undefined;
    timeoutMs?: number;
    skipDonors?: () => string[];
  },
): Promise<Snapshot> {
  const watch = watchInvariants(bed, opts.skipDonors ? { skipDonors: opts.skipDonors } : {});
  let outcome: FaultOutcome;
  try {
    if (opts.wave) await createPods(bed, opts.wave.app, opts.wave.pods, opts.wave.gpus ?? 1);
    outcome = await opts.inject();
  } catch (err) {
    await watch.stop();
    throw err;
  }
  let settled: { snapshot: Snapshot; ms: number } | undefined;
  let failure: unknown;
  try {
    settled = await settle(bed, `${opts.fault}: recovery`, opts.expect, opts.timeoutMs ?? 120_000);
  } catch (err) {
    failure = err;
  }
  // What broke during the fault matters more than how long recovery took.
  const violations = await watch.stop();
  if (!settled && opts.wave) {
    // Leave no wave behind to crowd the next scenario out.
    await bed.origin.core
      .deleteCollectionNamespacedPod({
        namespace: bed.workNamespace,
        labelSelector: `app=${opts.wave.app}`,
      })
      .catch(() => undefined);
  }
  if (violations.length > 0)
    throw new Error(`${opts.fault}: invariants broken during the fault:\n${violations.join('\n')}`);
  if (!settled) throw failure;
  const left = orphans(bed, settled.snapshot);
  if (left.length > 0) throw new Error(`${opts.fault}: orphans: ${left.join('; ')}`);
  const after = await outcome.recovered?.();
  const note = [outcome.note, after].filter(Boolean).join('; ');
  report({
    fault: opts.fault,
    outageMs: outcome.outageMs,
    recoverMs: settled.ms,
    ...(note ? { note } : {}),
  });
  return settled.snapshot;
}
