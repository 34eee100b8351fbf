import { randomUUID } from 'node:crypto';
import { ErrorCode, SpillwayError, validateClusterId } from '@spillway/common';
import type { PlacementPolicy, ReservationRecord, ReserveResult } from '../model.js';
import { fastCandidates, indexedCandidates, type FastDonor } from '../placement/fast.js';
import {
  evaluatePlacement,
  type Candidate,
  type DonorSnapshot,
  type PlacementSnapshot,
} from '../placement/engine.js';
import type { CandidateVerdict, PlacementRequest, PlacementResult } from './api.js';
import type { CoreDeps } from './deps.js';
import type { Lending } from './lending.js';
import { activeCluster } from './lookup.js';
import { invalid, validatePlacementRequest } from './validate.js';

/** Candidates a placement tries in turn when concurrent ones take the best first. */
const CANDIDATES_PER_ATTEMPT = 4;
const PLACE_ATTEMPTS = 3;

/** Placing pods: choosing a node, reserving its GPUs, and the reservation's later life. */
export class Placement {
  private placing = 0;
  private readonly queue: (() => void)[] = [];

  constructor(
    private readonly deps: CoreDeps,
    private readonly lending: Lending,
  ) {}

  /** Every candidate donor as the engine sees it (the full evaluation: simulate, refusals, gangs). */
  async snapshot(origin: string, only: readonly string[]): Promise<PlacementSnapshot> {
    const { view } = this.deps;
    await view.ready();
    const restrict = new Set(only);
    const donors: DonorSnapshot[] = [];
    for (const c of view.allClusters()) {
      if (c.id === origin || (restrict.size > 0 && !restrict.has(c.id))) continue;
      const d = view.peering(origin, c.id)
        ? view.donorSnapshot(c.id, origin)
        : { cluster: c, reservations: [] };
      if (d) donors.push(d);
    }
    return {
      origin,
      now: this.deps.now(),
      heartbeatTimeoutMs: this.deps.settings.heartbeatTimeoutMs,
      donors,
    };
  }

  /** The best few candidates from the view, or none (then the full evaluation says why). */
  private bestCandidates(
    origin: string,
    req: PlacementRequest,
    policy: PlacementPolicy,
  ): Candidate[] {
    const { view } = this.deps;
    const input = {
      origin,
      now: this.deps.now(),
      heartbeatTimeoutMs: this.deps.settings.heartbeatTimeoutMs,
    };
    if (req.donors.length === 0 && policy !== 'cost') {
      return indexedCandidates(
        view.freeIndex(),
        (id) => view.fastDonor(origin, id),
        input,
        req,
        policy,
        CANDIDATES_PER_ATTEMPT,
      );
    }
    const ids =
      req.donors.length > 0 ? req.donors : view.peeringsOf({ origin }).map((p) => p.donor);
    const donors: FastDonor[] = [];
    for (const id of ids) {
      const d = view.fastDonor(origin, id);
      if (d) donors.push(d);
    }
    return fastCandidates({ ...input, donors }, req, policy, CANDIDATES_PER_ATTEMPT);
  }

  private async checkOrigin(origin: string, request: PlacementRequest): Promise<PlacementRequest> {
    validateClusterId(origin, 'origin');
    const req = validatePlacementRequest(origin, request);
    await activeCluster(this.deps.store, origin, 'origin');
    return req;
  }

  /** Runs one placement when a slot is free, and counts its outcome once. */
  async place(origin: string, request: PlacementRequest): Promise<PlacementResult> {
    const started = performance.now();
    const observe = (result: string): void =>
      this.deps.metrics?.observePlacement(result, (performance.now() - started) / 1000);
    if (this.placing >= this.deps.settings.maxPlacements) {
      await new Promise<void>((resolve) => this.queue.push(resolve));
    } else {
      this.placing++;
    }
    try {
      const result = await this.placeOnce(origin, request);
      observe(result.placed ? 'placed' : result.code);
      return result;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      observe(typeof code === 'string' ? code : 'error');
      throw err;
    } finally {
      // Hand the slot straight to the next waiter, or give it back.
      const next = this.queue.shift();
      if (next) next();
      else this.placing--;
    }
  }

  private async placeOnce(origin: string, request: PlacementRequest): Promise<PlacementResult> {
    const { store, view, log, settings } = this.deps;
    const req = await this.checkOrigin(origin, request);
    const existing = await store.findReservationByPod(req.pod.uid);
    if (existing) return this.retried(origin, existing);
    const policy = req.policy ?? settings.policy;
    let lost: Extract<ReserveResult, { ok: false }> | undefined;
    let verdicts: CandidateVerdict[] = [];
    // Another look when every candidate was taken between choosing and reserving (by
    // another replica, or a change the view had not caught up with).
    for (let attempt = 0; attempt < PLACE_ATTEMPTS; attempt++) {
      await view.ready();
      let candidates = this.bestCandidates(origin, req, policy);
      verdicts = candidates.map((c) => ({
        donor: c.donor,
        node: c.node,
        reason: '',
        score: c.score,
      }));
      if (candidates.length === 0) {
        // Nothing fits: the full evaluation says why, node by node.
        const result = evaluatePlacement(await this.snapshot(origin, req.donors), req, policy);
        verdicts = result.verdicts;
        if (result.refusal) {
          return {
            placed: false,
            code: result.refusal.code,
            reason: result.refusal.reason,
            verdicts,
          };
        }
        candidates = result.candidates.slice(0, CANDIDATES_PER_ATTEMPT);
      }
      for (const c of candidates) {
        const at = this.deps.now();
        const promise: ReservationRecord = {
          id: randomUUID(),
          origin,
          donor: c.donor,
          node: c.node,
          resource: c.resource,
          gpus: c.gpus,
          pod: req.pod,
          state: 'open',
          createdAt: at.toISOString(),
          expiresAt: new Date(at.getTime() + settings.reservationTtlMs).toISOString(),
        };
        const { id, state: _state, createdAt: _created, expiresAt: _expires, ...ask } = promise;
        // Concurrent placements on this replica see the promise while it is being made.
        view.hold(promise);
        let res: ReserveResult;
        try {
          res = await store.reserve(
            {
              id,
              ...ask,
              ttlMs: settings.reservationTtlMs,
              peeringMaxGpus: c.peeringMaxGpus,
              donorMaxGpus: c.donorMaxGpus,
              donorMaxGpusPerOrigin: c.donorMaxGpusPerOrigin,
            },
            at,
          );
        } finally {
          view.unhold(id, c.donor);
        }
        if (res.ok) {
          log.info(
            {
              reservation: res.reservation.id,
              origin,
              donor: c.donor,
              node: c.node,
              gpus: c.gpus,
              pod: `${req.pod.namespace}/${req.pod.name}`,
            },
            'GPUs reserved',
          );
          this.lending.schedule(c.donor);
          return { placed: true, reservation: res.reservation, verdicts };
        }
        if (res.code === 'ALREADY_EXISTS') {
          // The same pod placed concurrently by a retry: answer with that reservation.
          const winner = await store.findReservationByPod(req.pod.uid);
          if (winner) return this.retried(origin, winner);
          continue;
        }
        // The store saw the donor otherwise than the view: read it again.
        view.invalidate(c.donor);
        lost = res;
        const v = verdicts.find((x) => x.donor === c.donor && x.node === c.node && x.reason === '');
        if (v) v.reason = `${c.donor}/${c.node}: taken concurrently (${res.reason})`;
      }
    }
    return {
      placed: false,
      code: lost?.code ?? ErrorCode.NO_FIT,
      reason: `every node that fit ${req.gpus} ${req.resource} was taken by concurrent placements${lost ? `; last: ${lost.reason}` : ''}`,
      verdicts,
    };
  }

  private retried(origin: string, r: ReservationRecord): PlacementResult {
    if (r.origin !== origin) {
      throw new SpillwayError(
        ErrorCode.CONFLICT,
        `pod.uid: pod ${r.pod.uid} already has a reservation of another origin`,
        { field: 'pod.uid' },
      );
    }
    return { placed: true, reservation: r, verdicts: [] };
  }

  async simulate(origin: string, request: PlacementRequest): Promise<PlacementResult> {
    const req = await this.checkOrigin(origin, request);
    const snap = await this.snapshot(origin, req.donors);
    const result = evaluatePlacement(snap, req, req.policy ?? this.deps.settings.policy);
    const best = result.candidates[0];
    if (result.refusal || !best) {
      return {
        placed: false,
        code: result.refusal?.code ?? ErrorCode.NO_FIT,
        reason: result.refusal?.reason ?? 'no candidate',
        verdicts: result.verdicts,
      };
    }
    return {
      placed: true,
      simulated: true,
      verdicts: result.verdicts,
      reservation: {
        id: '',
        origin,
        donor: best.donor,
        node: best.node,
        resource: best.resource,
        gpus: best.gpus,
        pod: req.pod,
        state: 'open',
        createdAt: snap.now.toISOString(),
        expiresAt: new Date(snap.now.getTime() + this.deps.settings.reservationTtlMs).toISOString(),
      },
    };
  }

  async release(origin: string, reservationId: string, reason: string): Promise<boolean> {
    const { store, log } = this.deps;
    validateClusterId(origin, 'origin');
    if (typeof reservationId !== 'string' || reservationId === '') {
      throw invalid('reservationId', 'must not be empty');
    }
    const r = await store.getReservation(reservationId);
    if (!r) {
      throw new SpillwayError(
        ErrorCode.NOT_FOUND,
        `reservationId: reservation ${reservationId} not found`,
        { field: 'reservationId' },
      );
    }
    if (r.origin !== origin) {
      throw new SpillwayError(
        ErrorCode.PERMISSION_DENIED,
        `reservationId: reservation ${reservationId} belongs to another origin`,
        { field: 'reservationId' },
      );
    }
    const released = await store.release(
      reservationId,
      reason || 'released by origin',
      this.deps.now(),
    );
    if (released) {
      log.info({ reservation: reservationId, origin, reason }, 'reservation released');
      this.lending.schedule(r.donor);
    }
    return released !== undefined;
  }

  async assertReservationLive(
    origin: string,
    donor: string,
    podUid: string,
    reservationId: string,
  ): Promise<ReservationRecord> {
    const { store, settings } = this.deps;
    const r = await store.findReservationByPod(podUid);
    if (!r || r.id !== reservationId || r.origin !== origin || r.donor !== donor) {
      const was = r ? undefined : await store.getReservation(reservationId);
      throw new SpillwayError(
        ErrorCode.CONFLICT,
        `reservation_id: reservation ${reservationId} no longer holds GPUs on ${donor} for pod uid ${podUid}` +
          `${was ? ` (it is ${was.state}${was.reason ? `: ${was.reason}` : ''})` : ''}; place the pod again`,
        { field: 'reservation_id' },
      );
    }
    // The donor must create the pod and report it before the reservation lapses: it is
    // given a full TTL from now, however long the origin took to get here.
    if (r.state === 'open') {
      const extended = await store.extend(
        r.id,
        new Date(this.deps.now().getTime() + settings.reservationTtlMs),
      );
      if (extended) return extended;
      // Bound or finished in between: read it again.
      return this.assertReservationLive(origin, donor, podUid, reservationId);
    }
    return r;
  }
}
