import { SpillwayError, invalid } from '@spillway/common';
import type { GangReserveRequest, GangReserveResult, ReserveResult } from '../model.js';
import { validateReserveRequest } from './internal.js';

/** Members a gang may have: more than any operator's gang a donor could hold. */
export const MAX_GANG_MEMBERS = 256;

/**
 * Throws INVALID_ARGUMENT naming the first bad field of a gang reservation: a name, 1 to
 * MAX_GANG_MEMBERS members of one origin on one donor, each a valid reserve request (0 GPUs
 * allowed), no reservation id or pod uid twice.
 */
export function validateGangReserveRequest(req: GangReserveRequest): void {
  if (typeof req?.gang !== 'string' || req.gang === '') {
    throw invalid('gang', 'must be a non-empty string');
  }
  if (!Array.isArray(req.members) || req.members.length === 0) {
    throw invalid('members', 'must list at least one member');
  }
  if (req.members.length > MAX_GANG_MEMBERS) {
    throw invalid(
      'members',
      `must list at most ${MAX_GANG_MEMBERS} members, got ${req.members.length}`,
    );
  }
  const ids = new Set<string>();
  const uids = new Set<string>();
  const first = req.members[0]!;
  req.members.forEach((m, i) => {
    try {
      validateReserveRequest(m, 0);
    } catch (err) {
      if (!(err instanceof SpillwayError)) throw err;
      // The member's own message starts with its field: say which member it is.
      const field = `members[${i}].${err.field ?? 'request'}`;
      throw invalid(field, err.message.replace(/^[^:]*: /, ''));
    }
    if (m.origin !== first.origin) {
      throw invalid(`members[${i}].origin`, `is ${m.origin}, members[0] is ${first.origin}`);
    }
    if (m.donor !== first.donor) {
      throw invalid(
        `members[${i}].donor`,
        `is ${m.donor}, members[0] is ${first.donor}: a gang goes to one donor`,
      );
    }
    if (ids.has(m.id)) throw invalid(`members[${i}].id`, `reservation id ${m.id} appears twice`);
    if (uids.has(m.pod.uid)) {
      throw invalid(`members[${i}].pod.uid`, `pod uid ${m.pod.uid} appears twice`);
    }
    ids.add(m.id);
    uids.add(m.pod.uid);
  });
}

/** Thrown inside a SQLite gang transaction to roll it back with the member's refusal. */
export class GangRefused extends Error {
  constructor(readonly result: Extract<GangReserveResult, { ok: false }>) {
    super(result.reason);
  }
}

/** A member's refusal as the gang's: the same code, the member named. */
export function memberRefusal(
  req: GangReserveRequest,
  member: number,
  res: Extract<ReserveResult, { ok: false }>,
): Extract<GangReserveResult, { ok: false }> {
  const m = req.members[member]!;
  return {
    ok: false,
    code: res.code,
    member: res.code === 'QUOTA_EXCEEDED' ? -1 : member,
    reason: `gang ${req.gang}: member ${m.pod.namespace}/${m.pod.name} on ${m.donor}/${m.node}: ${res.reason}; nothing reserved`,
  };
}
