import { describe, expect, it } from 'vitest';
import { RemotePods, type RemotePodRecord } from './remote.js';

const rec = (uid: string, over: Partial<RemotePodRecord> = {}): RemotePodRecord => ({
  uid,
  donor: 'donor-a',
  namespace: 'ml',
  name: uid,
  remoteNamespace: 'spillway-origin',
  remoteName: `ml-${uid}`,
  nodeName: 'gpu-0',
  status: { phase: 'Running' },
  deleted: false,
  observedMs: 100,
  receivedMs: 1_000,
  ...over,
});

describe('RemotePods', () => {
  it('keeps the newest report of the donor (its own clock orders them)', () => {
    const r = new RemotePods();
    expect(r.upsert(rec('a', { observedMs: 200, status: { phase: 'Succeeded' } }))).toBe(true);
    expect(r.upsert(rec('a', { observedMs: 100, status: { phase: 'Running' } }))).toBe(false);
    expect(r.get('a')?.status.phase).toBe('Succeeded');
  });

  it('a pod we just created does not hide a report that came first', () => {
    const r = new RemotePods();
    r.upsert(rec('a', { status: { phase: 'Running' } }));
    r.created(rec('a', { status: { phase: 'Pending' }, observedMs: -1 }));
    expect(r.get('a')?.status.phase).toBe('Running');
    r.created(rec('b', { status: { phase: 'Pending' }, observedMs: -1 }));
    expect(r.get('b')?.status.phase).toBe('Pending');
  });

  it('a snapshot marks unlisted pods deleted, except ones heard of since it was requested', () => {
    const r = new RemotePods();
    expect(r.isSynced('donor-a')).toBe(false);
    r.upsert(rec('gone', { receivedMs: 1_000 }));
    r.upsert(rec('fresh', { receivedMs: 5_000 }));
    r.upsert(rec('other-donor', { donor: 'donor-b', receivedMs: 1_000 }));
    r.upsert(rec('listed', { receivedMs: 1_000, status: { phase: 'Pending' } }));
    const changed = r.applySnapshot(
      'donor-a',
      [rec('listed', { receivedMs: 4_000, observedMs: -1 })],
      4_000,
    );
    expect(r.isSynced('donor-a')).toBe(true);
    expect(r.isSynced('donor-b')).toBe(false);
    expect(r.get('gone')?.deleted).toBe(true);
    expect(r.get('fresh')?.deleted).toBe(false);
    expect(r.get('other-donor')?.deleted).toBe(false);
    expect(r.get('listed')?.status.phase).toBe('Running');
    expect(changed.sort()).toEqual(['gone', 'listed']);
  });
});
