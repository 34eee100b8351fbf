import type {
  PlaceGangRequest__Output,
  PlaceGangResponse,
  CandidateVerdict as ProtoCandidateVerdict,
} from '@spillway/api';
import { SpillwayError, invalid } from '@spillway/common';
import type { GangPlacementRequest, GangPlacementResult } from '../core/api.js';
import { MAX_GANG_MEMBERS } from '../store/gang.js';
import {
  LIMITS,
  clusterId,
  list,
  placeRequestFromProto,
  reservationToProto,
  str,
} from './convert.js';

/** Validates a PlaceGangRequest; each member's pod must be the caller's (the handler checks). */
export function placeGangRequestFromProto(r: PlaceGangRequest__Output): GangPlacementRequest {
  const gang = str(r.gang, 'gang', { required: true, max: 253 });
  const members = list(r.members, 'members', MAX_GANG_MEMBERS).map((m, i) => {
    try {
      return { ...placeRequestFromProto(m, 0), donors: [] };
    } catch (err) {
      if (!(err instanceof SpillwayError)) throw err;
      throw invalid(`members[${i}].${err.field ?? 'request'}`, err.message.replace(/^[^:]*: /, ''));
    }
  });
  if (members.length === 0) throw invalid('members', 'must list at least one member');
  const donors = list(r.donors, 'donors', LIMITS.donors).map((d, i) =>
    clusterId(d, `donors[${i}]`),
  );
  return { gang, members, donors };
}

export function gangResultToProto(result: GangPlacementResult): PlaceGangResponse {
  const verdicts: ProtoCandidateVerdict[] = result.verdicts.map((v) => ({
    donor_cluster: v.donor,
    node: v.node,
    reason: v.reason,
    score: v.score,
  }));
  if (result.placed) {
    return {
      placed: true,
      donor_cluster: result.donor,
      reservations: result.reservations.map(reservationToProto),
      verdicts,
    };
  }
  return { placed: false, reason: result.reason, reason_code: result.code, verdicts };
}
