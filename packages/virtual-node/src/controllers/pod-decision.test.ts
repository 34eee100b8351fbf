import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import {
  ANNOTATION_DONOR,
  ANNOTATION_REMOTE_POD,
  ANNOTATION_RESERVATION,
  ErrorCode,
} from '@spillway/common';
import { describe, expect, it } from 'vitest';
import { ANNOTATION_DONOR_NODE } from '../forge/placement.js';
import type { RemotePodRecord } from '../remote.js';
import {
  AWAIT_DONOR_SYNC_MS,
  DONOR_UNREACHABLE_RETRY_MS,
  deleteRecheckMs,
  placeRetryMs,
} from './delays.js';
import {
  createFailure,
  decide,
  decideTombstone,
  heldReservation,
  remoteAnnotations,
  type DonorFacts,
  type PodAction,
} from './pod-decision.js';

// Every branch of the pod controller's decision, one row each. The state is what the
// controller reads: the origin pod from the cache, the remote record, the donor's facts.

const DONOR = 'donor-b';
const REMOTE = 'spillway-origin-ml/train';

interface PodShape {
  phase?: string;
  uid?: string | null;
  deleting?: boolean;
  grace?: number;
  annotations?: Record<string, string>;
}

function pod(s: PodShape = {}): V1Pod {
  const status: V1PodStatus = s.phase ? { phase: s.phase } : {};
  return {
    metadata: {
      name: 'train',
      namespace: 'ml',
      ...(s.uid === null ? {} : { uid: s.uid ?? 'u-1' }),
      ...(s.deleting ? { deletionTimestamp: new Date('2026-05-01T10:00:00Z') } : {}),
      ...(s.grace !== undefined ? { deletionGracePeriodSeconds: s.grace } : {}),
      ...(s.annotations ? { annotations: s.annotations } : {}),
    },
    spec: { nodeName: 'spillway-donor-b', containers: [{ name: 'c', image: 'img' }] },
    status,
  };
}

function record(over: Partial<RemotePodRecord> = {}): RemotePodRecord {
  return {
    uid: 'u-1',
    donor: DONOR,
    namespace: 'ml',
    name: 'train',
    remoteNamespace: 'spillway-origin-ml',
    remoteName: 'train',
    nodeName: 'donor-b-gpu-0',
    status: { phase: 'Running' },
    deleted: false,
    observedMs: 5,
    receivedMs: 5,
    ...over,
  };
}

const ready: DonorFacts = {
  name: DONOR,
  peered: true,
  reachable: true,
  knownDown: false,
  synced: true,
};
/** The broker is away: the donor cannot be asked, but nobody says it is down. */
const brokerAway: DonorFacts = { ...ready, reachable: false };
/** The broker says the donor is NotReady (its agent is gone). */
const notReady: DonorFacts = { ...ready, reachable: false, knownDown: true };
/** The peering was removed (the broker no longer lists the donor). */
const unpeered: DonorFacts = { ...ready, peered: false, reachable: false, knownDown: true };
const unsynced: DonorFacts = { ...ready, synced: false };

const offloaded = { [ANNOTATION_DONOR]: DONOR, [ANNOTATION_REMOTE_POD]: REMOTE };
const reserved = { [ANNOTATION_RESERVATION]: 'r-1', [ANNOTATION_DONOR_NODE]: 'donor-b-gpu-0' };

interface Row {
  name: string;
  pod: V1Pod;
  rec?: RemotePodRecord;
  donor: DonorFacts;
  want: PodAction;
}

const rows: Row[] = [
  {
    name: 'a pod without a uid yet waits',
    pod: pod({ uid: null }),
    donor: ready,
    want: { kind: 'none', why: 'the pod has no uid yet' },
  },

  // ---- the peering is gone
  {
    name: 'peering removed, pod deleting: finalized at once',
    pod: pod({ phase: 'Running', deleting: true }),
    rec: record(),
    donor: unpeered,
    want: { kind: 'finalize', why: 'peering removed' },
  },
  {
    name: 'peering removed, pod running: fails with PeeringRemoved',
    pod: pod({ phase: 'Running', annotations: offloaded }),
    rec: record(),
    donor: unpeered,
    want: {
      kind: 'fail',
      reason: 'PeeringRemoved',
      message: 'the peering with donor donor-b was removed',
    },
  },
  {
    name: 'peering removed, pod pending and never offloaded: fails with PeeringRemoved',
    pod: pod({ phase: 'Pending' }),
    donor: unpeered,
    want: {
      kind: 'fail',
      reason: 'PeeringRemoved',
      message: 'the peering with donor donor-b was removed',
    },
  },
  {
    name: 'peering removed, pod Succeeded: left as it ended',
    pod: pod({ phase: 'Succeeded' }),
    rec: record({ status: { phase: 'Succeeded' } }),
    donor: unpeered,
    want: { kind: 'none', why: 'ended; peering removed' },
  },
  {
    name: 'peering removed, pod Failed: left as it ended',
    pod: pod({ phase: 'Failed' }),
    donor: unpeered,
    want: { kind: 'none', why: 'ended; peering removed' },
  },

  // ---- the origin pod is being deleted
  {
    name: 'deleting, remote pod reported deleted: finalized',
    pod: pod({ phase: 'Running', deleting: true, annotations: offloaded }),
    rec: record({ deleted: true }),
    donor: ready,
    want: { kind: 'finalize', why: 'remote pod gone' },
  },
  {
    name: 'deleting, donor NotReady: finalized; OffloadSync removes the copy on return',
    pod: pod({ phase: 'Running', deleting: true, annotations: offloaded }),
    rec: record(),
    donor: notReady,
    want: { kind: 'finalize', why: 'donor unreachable; its copy is removed when it returns' },
  },
  {
    name: 'deleting, nothing known yet, donor reachable: lists the donor and waits',
    pod: pod({ phase: 'Running', deleting: true, annotations: offloaded }),
    donor: unsynced,
    want: { kind: 'await-sync', listDonor: true, retryMs: AWAIT_DONOR_SYNC_MS },
  },
  {
    name: 'deleting, nothing known yet, broker away: waits without listing',
    pod: pod({ phase: 'Running', deleting: true, annotations: offloaded }),
    donor: { ...unsynced, reachable: false },
    want: { kind: 'await-sync', listDonor: false, retryMs: AWAIT_DONOR_SYNC_MS },
  },
  {
    name: 'deleting before it was offloaded, reservation held: released, then finalized',
    pod: pod({ phase: 'Pending', deleting: true, annotations: reserved }),
    donor: ready,
    want: {
      kind: 'finalize',
      why: 'no remote pod',
      release: { reservation: 'r-1', reason: 'origin pod deleted before it was offloaded' },
    },
  },
  {
    name: 'deleting, offloaded but the donor no longer has it: finalized, reservation kept (consumed)',
    pod: pod({ phase: 'Running', deleting: true, annotations: { ...reserved, ...offloaded } }),
    donor: ready,
    want: { kind: 'finalize', why: 'no remote pod' },
  },
  {
    name: 'deleting, never placed: finalized',
    pod: pod({ phase: 'Pending', deleting: true }),
    donor: ready,
    want: { kind: 'finalize', why: 'no remote pod' },
  },
  {
    name: 'deleting, copy runs, broker away: looks again later',
    pod: pod({ phase: 'Running', deleting: true, annotations: offloaded }),
    rec: record(),
    donor: brokerAway,
    want: { kind: 'retry', why: 'donor unreachable', retryMs: DONOR_UNREACHABLE_RETRY_MS },
  },
  {
    name: 'deleting with grace 5: the copy is deleted with grace 5, looked at after 7 s',
    pod: pod({ phase: 'Running', deleting: true, grace: 5, annotations: offloaded }),
    rec: record(),
    donor: ready,
    want: { kind: 'delete-remote', graceSeconds: 5, recheckMs: 7_000 },
  },
  {
    name: 'deleting with grace 0: deleted at once, looked at after the minimum',
    pod: pod({ phase: 'Running', deleting: true, grace: 0, annotations: offloaded }),
    rec: record(),
    donor: ready,
    want: { kind: 'delete-remote', graceSeconds: 0, recheckMs: 2_000 },
  },
  {
    name: 'deleting without a grace: the donor uses the pod’s own; looked at after 32 s',
    pod: pod({ phase: 'Running', deleting: true, annotations: offloaded }),
    rec: record(),
    donor: ready,
    want: { kind: 'delete-remote', graceSeconds: undefined, recheckMs: 32_000 },
  },
  {
    name: 'deleting a Succeeded pod whose copy still runs: deletion wins over the phase',
    pod: pod({ phase: 'Succeeded', deleting: true, grace: 1, annotations: offloaded }),
    rec: record(),
    donor: ready,
    want: { kind: 'delete-remote', graceSeconds: 1, recheckMs: 3_000 },
  },

  // ---- the origin pod has ended
  {
    name: 'Failed here while the copy still runs: the copy is stopped',
    pod: pod({ phase: 'Failed', annotations: offloaded }),
    rec: record(),
    donor: ready,
    want: { kind: 'stop-remote' },
  },
  {
    name: 'Failed here, copy still Pending there: stopped too',
    pod: pod({ phase: 'Failed' }),
    rec: record({ status: { phase: 'Pending' }, assumed: true }),
    donor: ready,
    want: { kind: 'stop-remote' },
  },
  {
    name: 'Failed here while the copy runs, broker away: nothing (stopped on return)',
    pod: pod({ phase: 'Failed', annotations: offloaded }),
    rec: record(),
    donor: brokerAway,
    want: { kind: 'none', why: 'ended' },
  },
  {
    name: 'Succeeded, copy Succeeded: never mirrored back to Running',
    pod: pod({ phase: 'Succeeded', annotations: offloaded }),
    rec: record({ status: { phase: 'Succeeded' } }),
    donor: ready,
    want: { kind: 'none', why: 'ended' },
  },
  {
    name: 'Succeeded, copy reported deleted: left as it ended',
    pod: pod({ phase: 'Succeeded', annotations: offloaded }),
    rec: record({ status: { phase: 'Running' }, deleted: true }),
    donor: ready,
    want: { kind: 'none', why: 'ended' },
  },
  {
    name: 'Failed, the copy is gone: never recreated',
    pod: pod({ phase: 'Failed', annotations: offloaded }),
    donor: ready,
    want: { kind: 'none', why: 'ended' },
  },
  {
    name: 'Failed before it was offloaded: never created',
    pod: pod({ phase: 'Failed' }),
    donor: ready,
    want: { kind: 'none', why: 'ended' },
  },

  // ---- the copy exists
  {
    name: 'copy reported, not yet annotated: annotated (first time) and mirrored',
    pod: pod({ phase: 'Pending', annotations: reserved }),
    rec: record(),
    donor: ready,
    want: {
      kind: 'mirror',
      record: record(),
      annotate: { donor: DONOR, remotePod: REMOTE, first: true },
      mirror: true,
    },
  },
  {
    name: 'copy reported, annotated: mirrored only',
    pod: pod({ phase: 'Pending', annotations: offloaded }),
    rec: record(),
    donor: ready,
    want: { kind: 'mirror', record: record(), annotate: undefined, mirror: true },
  },
  {
    name: 'annotations name another copy: rewritten, not a first offload',
    pod: pod({
      phase: 'Running',
      annotations: { [ANNOTATION_DONOR]: DONOR, [ANNOTATION_REMOTE_POD]: 'old/train' },
    }),
    rec: record(),
    donor: ready,
    want: {
      kind: 'mirror',
      record: record(),
      annotate: { donor: DONOR, remotePod: REMOTE, first: false },
      mirror: true,
    },
  },
  {
    name: 'just created (assumed), not annotated: annotated, nothing mirrored yet',
    pod: pod({ phase: 'Pending' }),
    rec: record({ status: { phase: 'Pending' }, assumed: true }),
    donor: ready,
    want: {
      kind: 'mirror',
      record: record({ status: { phase: 'Pending' }, assumed: true }),
      annotate: { donor: DONOR, remotePod: REMOTE, first: true },
      mirror: false,
    },
  },
  {
    name: 'just created (assumed), annotated: waits for the donor’s first report',
    pod: pod({ phase: 'Pending', annotations: offloaded }),
    rec: record({ status: { phase: 'Pending' }, assumed: true }),
    donor: ready,
    want: { kind: 'none', why: 'awaiting the donor report' },
  },
  {
    name: 'copy known, donor NotReady: no status posted (the node lifecycle owns it)',
    pod: pod({ phase: 'Running', annotations: offloaded }),
    rec: record(),
    donor: notReady,
    want: { kind: 'none', why: 'donor unreachable' },
  },
  {
    name: 'copy known, not annotated, broker away: annotated, not mirrored',
    pod: pod({ phase: 'Running' }),
    rec: record(),
    donor: brokerAway,
    want: {
      kind: 'mirror',
      record: record(),
      annotate: { donor: DONOR, remotePod: REMOTE, first: true },
      mirror: false,
    },
  },
  {
    name: 'copy reported deleted by the donor: mirrored (the pod fails RemotePodDeleted)',
    pod: pod({ phase: 'Running', annotations: offloaded }),
    rec: record({ deleted: true }),
    donor: ready,
    want: { kind: 'mirror', record: record({ deleted: true }), annotate: undefined, mirror: true },
  },
  {
    name: 'a record without a remote name yet: nothing to annotate, mirrored',
    pod: pod({ phase: 'Pending' }),
    rec: record({ remoteName: '' }),
    donor: ready,
    want: { kind: 'mirror', record: record({ remoteName: '' }), annotate: undefined, mirror: true },
  },

  // ---- no copy known
  {
    name: 'nothing known, donor not listed yet: lists it and waits',
    pod: pod({ phase: 'Pending', annotations: reserved }),
    donor: unsynced,
    want: { kind: 'await-sync', listDonor: true, retryMs: AWAIT_DONOR_SYNC_MS },
  },
  {
    name: 'nothing known, donor not listed yet and unreachable: waits without listing',
    pod: pod({ phase: 'Running', annotations: offloaded }),
    donor: { ...unsynced, reachable: false, knownDown: true },
    want: { kind: 'await-sync', listDonor: false, retryMs: AWAIT_DONOR_SYNC_MS },
  },
  {
    name: 'remote pod missing after the listing, pod was offloaded: fails RemotePodLost',
    pod: pod({ phase: 'Running', annotations: offloaded }),
    donor: ready,
    want: {
      kind: 'fail',
      reason: 'RemotePodLost',
      message: 'the pod no longer exists on donor donor-b',
    },
  },
  {
    name: 'remote pod missing, pod was offloaded, donor NotReady: fails RemotePodLost too',
    pod: pod({ phase: 'Running', annotations: offloaded }),
    donor: notReady,
    want: {
      kind: 'fail',
      reason: 'RemotePodLost',
      message: 'the pod no longer exists on donor donor-b',
    },
  },
  {
    name: 'not created yet, donor NotReady: looks again later',
    pod: pod({ phase: 'Pending', annotations: reserved }),
    donor: notReady,
    want: { kind: 'retry', why: 'donor unreachable', retryMs: DONOR_UNREACHABLE_RETRY_MS },
  },
  {
    name: 'not created yet, broker away: looks again later',
    pod: pod({ phase: 'Pending' }),
    donor: brokerAway,
    want: { kind: 'retry', why: 'donor unreachable', retryMs: DONOR_UNREACHABLE_RETRY_MS },
  },
  {
    name: 'bound by the binder with a reservation: created with it',
    pod: pod({ phase: 'Pending', annotations: reserved }),
    donor: ready,
    want: { kind: 'create', reservation: { id: 'r-1', node: 'donor-b-gpu-0' } },
  },
  {
    name: 'reservation without a donor node: created, the donor picks the node',
    pod: pod({ phase: 'Pending', annotations: { [ANNOTATION_RESERVATION]: 'r-2' } }),
    donor: ready,
    want: { kind: 'create', reservation: { id: 'r-2', node: undefined } },
  },
  {
    name: 'bound by the scheduler or nodeName (no reservation), or its reservation lapsed: placed first',
    pod: pod({ phase: 'Pending' }),
    donor: ready,
    want: { kind: 'create', reservation: undefined },
  },
  {
    name: 'no phase yet (just bound): created like Pending',
    pod: pod({}),
    donor: ready,
    want: { kind: 'create', reservation: undefined },
  },
];

describe('decide', () => {
  it.each(rows)('$name', ({ pod: p, rec, donor, want }) => {
    expect(decide(p, rec, donor)).toEqual(want);
  });

  it('reaches every kind of action', () => {
    const kinds = new Set(rows.map((r) => decide(r.pod, r.rec, r.donor).kind));
    const all: PodAction['kind'][] = [
      'none',
      'fail',
      'finalize',
      'await-sync',
      'retry',
      'delete-remote',
      'stop-remote',
      'mirror',
      'create',
    ];
    expect([...kinds].sort()).toEqual([...all].sort());
  });

  // Whatever the donor and the record say, an ended origin pod is never brought back: it is
  // never mirrored (to Pending or Running), never created again and never failed anew.
  it('never mirrors, creates or fails a Succeeded or Failed pod, in any state', () => {
    const records: (RemotePodRecord | undefined)[] = [
      undefined,
      record(),
      record({ status: { phase: 'Pending' }, assumed: true }),
      record({ status: { phase: 'Succeeded' } }),
      record({ status: { phase: 'Failed' } }),
      record({ deleted: true }),
    ];
    const annotations = [undefined, offloaded, reserved, { ...reserved, ...offloaded }];
    const bools = [false, true];
    let cases = 0;
    for (const phase of ['Succeeded', 'Failed'])
      for (const deleting of bools)
        for (const a of annotations)
          for (const rec of records)
            for (const peered of bools)
              for (const reachable of bools)
                for (const knownDown of bools)
                  for (const synced of bools) {
                    const p = pod({ phase, deleting, ...(a ? { annotations: a } : {}) });
                    const action = decide(p, rec, {
                      name: DONOR,
                      peered,
                      reachable,
                      knownDown,
                      synced,
                    });
                    cases++;
                    expect(['mirror', 'create', 'fail']).not.toContain(action.kind);
                    if (!deleting) expect(['none', 'stop-remote']).toContain(action.kind);
                  }
    expect(cases).toBe(2 * 2 * 4 * 6 * 16);
  });
});

describe('decideTombstone', () => {
  const tomb = pod({ phase: 'Running', annotations: offloaded });
  const reachable = { name: DONOR, reachable: true };
  it.each([
    { name: 'no tombstone: nothing to reap', tomb: undefined, want: { kind: 'keep' } },
    {
      name: 'the same pod is back in the cache: kept',
      tomb,
      pod: pod({ phase: 'Running' }),
      donor: reachable,
      want: { kind: 'keep' },
    },
    {
      name: 'force-deleted, copy runs, donor reachable: its copy is deleted',
      tomb,
      rec: record(),
      donor: reachable,
      want: { kind: 'reap', deleteRemoteOn: DONOR },
    },
    {
      name: 'force-deleted, nothing known of the copy: deleted anyway (it may exist)',
      tomb,
      donor: reachable,
      want: { kind: 'reap', deleteRemoteOn: DONOR },
    },
    {
      name: 'recreated under the same name (new uid): the old one’s copy is deleted',
      tomb,
      pod: pod({ uid: 'u-2', phase: 'Pending' }),
      rec: record(),
      donor: reachable,
      want: { kind: 'reap', deleteRemoteOn: DONOR },
    },
    {
      name: 'force-deleted, copy already gone: forgotten',
      tomb,
      rec: record({ deleted: true }),
      donor: reachable,
      want: { kind: 'reap', deleteRemoteOn: undefined },
    },
    {
      name: 'force-deleted, donor unreachable: forgotten; OffloadSync cleans up on return',
      tomb,
      rec: record(),
      donor: { name: DONOR, reachable: false },
      want: { kind: 'reap', deleteRemoteOn: undefined },
    },
    {
      name: 'force-deleted from a node of no known donor: forgotten',
      tomb,
      rec: record(),
      donor: undefined,
      want: { kind: 'reap', deleteRemoteOn: undefined },
    },
  ] as {
    name: string;
    tomb: V1Pod | undefined;
    pod?: V1Pod;
    rec?: RemotePodRecord;
    donor?: { name: string; reachable: boolean };
    want: unknown;
  }[])('$name', (r) => {
    expect(decideTombstone(r.tomb, r.pod, r.rec, r.donor)).toEqual(r.want);
  });
});

describe('createFailure', () => {
  it.each([
    { code: ErrorCode.CONFLICT, field: 'reservation_id', want: 'lapsed' },
    { code: ErrorCode.CONFLICT, field: 'pod', want: 'retry' },
    { code: ErrorCode.CONFLICT, field: undefined, want: 'retry' },
    { code: ErrorCode.POD_REFUSED, field: undefined, want: 'refused' },
    { code: ErrorCode.INVALID_ARGUMENT, field: 'pod_json', want: 'refused' },
    { code: ErrorCode.PERMISSION_DENIED, field: undefined, want: 'refused' },
    { code: ErrorCode.QUOTA_EXCEEDED, field: undefined, want: 'refused' },
    { code: ErrorCode.PAYLOAD_TOO_LARGE, field: undefined, want: 'refused' },
    { code: ErrorCode.UNAVAILABLE, field: undefined, want: 'retry' },
    { code: ErrorCode.NOT_FOUND, field: undefined, want: 'retry' },
  ])('$code ($field) → $want', ({ code, field, want }) => {
    expect(createFailure({ code, field })).toBe(want);
  });
});

describe('annotations', () => {
  it('names the copy unless the pod already does', () => {
    expect(remoteAnnotations(pod(), DONOR, record())).toEqual({
      donor: DONOR,
      remotePod: REMOTE,
      first: true,
    });
    expect(remoteAnnotations(pod({ annotations: offloaded }), DONOR, record())).toBeUndefined();
    // Same remote pod, annotated as another donor's: rewritten.
    expect(
      remoteAnnotations(
        pod({ annotations: { ...offloaded, [ANNOTATION_DONOR]: 'donor-a' } }),
        DONOR,
        record(),
      ),
    ).toEqual({ donor: DONOR, remotePod: REMOTE, first: false });
  });

  it('reads the held reservation', () => {
    expect(heldReservation(pod())).toBeUndefined();
    expect(heldReservation(pod({ annotations: { [ANNOTATION_RESERVATION]: '' } }))).toBeUndefined();
    expect(heldReservation(pod({ annotations: reserved }))).toEqual({
      id: 'r-1',
      node: 'donor-b-gpu-0',
    });
  });
});

describe('delays', () => {
  it('looks again at a deletion once its grace period is over', () => {
    expect(deleteRecheckMs(undefined)).toBe(32_000);
    expect(deleteRecheckMs(0)).toBe(2_000);
    expect(deleteRecheckMs(60)).toBe(62_000);
  });

  it('backs placement off from 1 s to the configured cap, with 20 % jitter', () => {
    expect(placeRetryMs(1, 30_000, () => 0)).toBe(800);
    expect(placeRetryMs(1, 30_000, () => 1)).toBe(1_000);
    expect(placeRetryMs(3, 30_000, () => 1)).toBe(4_000);
    expect(placeRetryMs(20, 30_000, () => 1)).toBe(30_000);
  });
});
