import { ErrorCode, SpillwayError } from '@spillway/common';
import type {
  GangReserveRequest,
  GangReserveResult,
  ReservationRecord,
  ReserveRequest,
} from '../model.js';
import { memberRefusal } from './gang.js';
import { newReservation, noFitReason, quotaViolation } from './internal.js';

/** The script's arguments (after the key prefix) and the records it writes. */
export function gangScriptArgs(
  req: GangReserveRequest,
  now: Date,
): { args: (string | number)[]; records: ReservationRecord[] } {
  const records = req.members.map((m) => newReservation(m, now));
  const first = records[0]!;
  const head = req.members[0]!;
  const args: (string | number)[] = [
    first.origin,
    first.donor,
    first.createdAt,
    first.expiresAt,
    now.getTime(),
    Date.parse(first.expiresAt),
    head.peeringMaxGpus,
    head.donorMaxGpus,
    head.donorMaxGpusPerOrigin,
    records.length,
  ];
  for (const r of records) {
    args.push(r.id, r.node, r.resource, r.gpus, r.pod.uid, JSON.stringify(r.pod));
  }
  return { args, records };
}

/** The script's reply as the store's answer. */
export function gangScriptResult(
  req: GangReserveRequest,
  records: ReservationRecord[],
  reply: string[],
): GangReserveResult {
  const member = (i: string | undefined): number => Number(i) - 1;
  switch (reply[0]) {
    case 'OK':
      return { ok: true, reservations: records };
    case 'NO_FIT': {
      const i = member(reply[1]);
      const m = req.members[i]!;
      return memberRefusal(req, i, {
        ok: false,
        code: 'NO_FIT',
        reason: noFitReason(m, Number(reply[2])),
      });
    }
    case 'ALREADY_EXISTS': {
      const i = member(reply[1]);
      const m = req.members[i]!;
      return memberRefusal(req, i, {
        ok: false,
        code: 'ALREADY_EXISTS',
        reason:
          reply[2] === 'id'
            ? `reservation ${m.id} already exists`
            : `pod ${m.pod.namespace}/${m.pod.name} (uid ${m.pod.uid}) already has live reservation ${reply[3]}`,
      });
    }
    case 'QUOTA_EXCEEDED': {
      const gpus = Number(reply[3]);
      const asOne: ReserveRequest = { ...req.members[0]!, gpus };
      return {
        ok: false,
        code: 'QUOTA_EXCEEDED',
        member: -1,
        reason: `gang ${req.gang} (${gpus} GPUs): ${
          quotaViolation(asOne, { total: Number(reply[1]), origin: Number(reply[2]) }) ??
          `a GPU limit of donor ${asOne.donor} would be passed`
        }; nothing reserved`,
      };
    }
    default:
      throw new SpillwayError(
        ErrorCode.INTERNAL,
        `redis store: unexpected reserveGang reply ${String(reply[0])}`,
      );
  }
}
