import type { StatementSync } from 'node:sqlite';
import type {
  ClusterInventory,
  NodeInventory,
  ReservationRecord,
  ReserveRequest,
  ReserveResult,
} from '../model.js';
import { newReservation, noFitReason, quotaViolation, reservableGpus } from './internal.js';
import { RESERVATION_COLUMNS, num, text, toReservation } from './sqlite-codec.js';
import { LIVE_SQL } from './sqlite-schema.js';

/**
 * The SQLite store's two read-check-write steps, run inside the caller's BEGIN IMMEDIATE
 * transaction; `q` prepares (and caches) a statement on its connection.
 */
type Prepare = (sql: string) => StatementSync;

/**
 * After a capacity report: binds the donor's open reservations whose pods the report shows,
 * and binds again an expired one whose pod it shows and that has no live successor.
 */
export function bindReported(
  q: Prepare,
  clusterId: string,
  next: ClusterInventory,
  now: Date,
): ReservationRecord[] {
  const offloaded = new Set(next.nodes.flatMap((n) => n.offloadedPodUids));
  const open = q(
    `SELECT ${RESERVATION_COLUMNS} FROM reservations WHERE donor = ? AND state = 'open'`,
  )
    .all(clusterId)
    .map(toReservation)
    .filter((r) => offloaded.has(r.pod.uid));
  const boundAt = now.toISOString();
  const bind = q(`UPDATE reservations SET state = 'bound', bound_at = ? WHERE id = ?`);
  for (const r of open) bind.run(boundAt, r.id);
  // A pod the donor runs whose reservation lapsed meanwhile (its report could not reach
  // us in time) holds its GPUs all the same: that reservation is bound again.
  const live = new Set(
    q(`SELECT pod_uid FROM reservations WHERE donor = ? AND ${LIVE_SQL}`)
      .all(clusterId)
      .map((r) => text(r.pod_uid)),
  );
  const lapsed = new Map<string, ReservationRecord>();
  if ([...offloaded].some((uid) => !live.has(uid))) {
    for (const row of q(
      `SELECT ${RESERVATION_COLUMNS} FROM reservations
       WHERE donor = ? AND state = 'expired' ORDER BY created_at, id`,
    ).all(clusterId)) {
      const r = toReservation(row);
      if (offloaded.has(r.pod.uid) && !live.has(r.pod.uid)) lapsed.set(r.pod.uid, r);
    }
  }
  const rebind = q(
    `UPDATE reservations SET state = 'bound', bound_at = ?, ended_at = NULL, reason = NULL
     WHERE id = ?`,
  );
  const rebound = [...lapsed.values()].map((r) => {
    rebind.run(boundAt, r.id);
    const out: ReservationRecord = { ...r, state: 'bound', boundAt };
    delete out.endedAt;
    delete out.reason;
    return out;
  });
  return [...open.map((r) => ({ ...r, state: 'bound' as const, boundAt })), ...rebound];
}

/** reserve(): the fit and quota checks, then the open reservation. */
export function reserveInTx(q: Prepare, req: ReserveRequest, now: Date): ReserveResult {
  if (q('SELECT 1 FROM reservations WHERE id = ?').get(req.id)) {
    return {
      ok: false,
      code: 'ALREADY_EXISTS',
      reason: `reservation ${req.id} already exists`,
    };
  }
  const live = q(`SELECT id FROM reservations WHERE pod_uid = ? AND ${LIVE_SQL}`).get(req.pod.uid);
  if (live) {
    return {
      ok: false,
      code: 'ALREADY_EXISTS',
      reason: `pod ${req.pod.namespace}/${req.pod.name} (uid ${req.pod.uid}) already has live reservation ${text(live.id)}`,
    };
  }
  const nodeRow = q('SELECT data FROM inventory_nodes WHERE cluster_id = ? AND name = ?').get(
    req.donor,
    req.node,
  );
  const node = nodeRow ? (JSON.parse(text(nodeRow.data)) as NodeInventory) : undefined;
  const open = q(
    `SELECT resource, gpus, pod_uid FROM reservations
     WHERE donor = ? AND node = ? AND state = 'open'`,
  )
    .all(req.donor, req.node)
    .map((r) => ({
      state: 'open' as const,
      node: req.node,
      resource: text(r.resource),
      gpus: num(r.gpus),
      pod: { uid: text(r.pod_uid) },
    }));
  const free = reservableGpus(node, req.resource, open);
  if (free < req.gpus) return { ok: false, code: 'NO_FIT', reason: noFitReason(req, free) };

  const used = q(
    `SELECT COALESCE(SUM(gpus), 0) AS total,
            COALESCE(SUM(CASE WHEN origin = ? THEN gpus ELSE 0 END), 0) AS origin
     FROM reservations WHERE donor = ? AND ${LIVE_SQL}`,
  ).get(req.origin, req.donor);
  const violation = quotaViolation(req, {
    total: num(used?.total ?? 0),
    origin: num(used?.origin ?? 0),
  });
  if (violation) return { ok: false, code: 'QUOTA_EXCEEDED', reason: violation };

  const r = newReservation(req, now);
  q(
    `INSERT INTO reservations (id, origin, donor, node, resource, gpus, pod_uid, pod, state,
       created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)`,
  ).run(
    r.id,
    r.origin,
    r.donor,
    r.node,
    r.resource,
    r.gpus,
    r.pod.uid,
    JSON.stringify(r.pod),
    r.createdAt,
    r.expiresAt,
  );
  return { ok: true, reservation: r };
}
