import type { StatementSync } from 'node:sqlite';
import type { GangReserveRequest, GangReserveResult } from '../model.js';
import { GangRefused, memberRefusal } from './gang.js';
import { noFitReason } from './internal.js';
import { reserveInTx } from './sqlite-reserve.js';

/**
 * reserveGang() on SQLite, inside the caller's BEGIN IMMEDIATE transaction: each member is
 * reserved in turn (so later members see the GPUs and quota earlier ones took); the first
 * refusal throws GangRefused, which rolls the whole transaction back.
 */
export function reserveGangInTx(
  q: (sql: string) => StatementSync,
  req: GangReserveRequest,
  now: Date,
): GangReserveResult {
  const known = q('SELECT 1 FROM inventory_nodes WHERE cluster_id = ? AND name = ?');
  const reservations = req.members.map((m, i) => {
    // A member of 0 GPUs still needs its node to exist.
    const res = known.get(m.donor, m.node)
      ? reserveInTx(q, m, now)
      : ({ ok: false, code: 'NO_FIT', reason: noFitReason(m, 0) } as const);
    if (!res.ok) throw new GangRefused(memberRefusal(req, i, res));
    return res.reservation;
  });
  return { ok: true, reservations };
}
