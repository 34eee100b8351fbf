import { randomUUID } from 'node:crypto';
import { ErrorCode, SpillwayError, validateClusterId } from '@spillway/common';
import type { GangReserveResult, ReservationRecord, ReserveRequest } from '../model.js';
import { evaluateGang, type GangPlan } from '../placement/gang.js';
import type { GangPlacementRequest, GangPlacementResult } from './api.js';
import type { CoreDeps } from './deps.js';
import type { Lending } from './lending.js';
import { activeCluster } from './lookup.js';
import type { Placement } from './placement.js';
import { validateGangPlacementRequest } from './validate.js';

/** Plans a placement tries in turn when concurrent ones take the best first. */
const PLANS_PER_ATTEMPT = 4;
const GANG_ATTEMPTS = 3;

/** Placing gangs: one donor for all members, reserved in one atomic store step, or none. */
export class GangPlacement {
  constructor(
    private readonly deps: CoreDeps,
    private readonly lending: Lending,
    private readonly single: Placement,
  ) {}

  private async check(
    origin: string,
    request: GangPlacementRequest,
  ): Promise<GangPlacementRequest> {
    validateClusterId(origin, 'origin');
    const req = validateGangPlacementRequest(origin, request);
    await activeCluster(this.deps.store, origin, 'origin');
    return req;
  }

  /**
   * Members with a live reservation (a retry after a lost answer, a restart): they keep it,
   * and decide the donor for the rest. Members on several donors are a CONFLICT.
   */
  private async held(
    origin: string,
    req: GangPlacementRequest,
  ): Promise<{ held: (ReservationRecord | undefined)[]; donor?: string }> {
    const held = await Promise.all(
      req.members.map((m) => this.deps.store.findReservationByPod(m.pod.uid)),
    );
    const donors = new Set<string>();
    held.forEach((r, i) => {
      if (!r) return;
      if (r.origin !== origin) {
        throw new SpillwayError(
          ErrorCode.CONFLICT,
          `members[${i}].pod.uid: pod ${r.pod.uid} already has a reservation of another origin`,
          { field: `members[${i}].pod.uid` },
        );
      }
      donors.add(r.donor);
    });
    if (donors.size > 1) {
      throw new SpillwayError(
        ErrorCode.CONFLICT,
        `gang ${req.gang}: members hold reservations on several donors (${[...donors].sort().join(', ')}); release them and place the gang again`,
        { field: 'members' },
      );
    }
    const [donor] = donors;
    return donor === undefined ? { held } : { held, donor };
  }

  async placeGang(origin: string, request: GangPlacementRequest): Promise<GangPlacementResult> {
    const { view, log, settings } = this.deps;
    const started = performance.now();
    const observe = (result: string): void =>
      this.deps.metrics?.observePlacement(`gang-${result}`, (performance.now() - started) / 1000);
    const req = await this.check(origin, request);
    const policy = req.policy ?? settings.policy;
    let lost: Extract<GangReserveResult, { ok: false }> | undefined;
    let verdicts: GangPlacementResult['verdicts'] = [];
    for (let attempt = 0; attempt < GANG_ATTEMPTS; attempt++) {
      const { held, donor } = await this.held(origin, req);
      const missing = req.members.filter((_, i) => held[i] === undefined);
      if (missing.length === 0 && donor !== undefined) {
        observe('placed');
        return {
          placed: true,
          gang: req.gang,
          donor,
          reservations: held as ReservationRecord[],
          verdicts: [],
        };
      }
      const donors = donor !== undefined ? [donor] : req.donors;
      const result = evaluateGang(
        await this.single.snapshot(origin, donors),
        { ...req, members: missing, donors },
        policy,
      );
      verdicts = result.verdicts;
      if (result.refusal) {
        observe(result.refusal.code);
        return {
          placed: false,
          gang: req.gang,
          code: result.refusal.code,
          reason: result.refusal.reason,
          verdicts,
        };
      }
      for (const plan of result.plans.slice(0, PLANS_PER_ATTEMPT)) {
        const res = await this.reservePlan(origin, req.gang, missing, plan);
        if (res.ok) {
          const mine = new Map(res.reservations.map((r) => [r.pod.uid, r]));
          const reservations = req.members.map((m, i) => held[i] ?? mine.get(m.pod.uid)!);
          log.info(
            {
              gang: req.gang,
              origin,
              donor: plan.donor,
              members: reservations.length,
              gpus: plan.gpus,
            },
            'gang reserved',
          );
          this.lending.schedule(plan.donor);
          observe('placed');
          return { placed: true, gang: req.gang, donor: plan.donor, reservations, verdicts };
        }
        lost = res;
        // A member placed concurrently (a retry): look at what the members hold again.
        if (res.code === 'ALREADY_EXISTS') break;
        view.invalidate(plan.donor);
        const v = verdicts.find((x) => x.donor === plan.donor && x.reason === '');
        if (v) v.reason = `${plan.donor}: taken concurrently (${res.reason})`;
      }
    }
    observe(lost?.code ?? ErrorCode.NO_FIT);
    return {
      placed: false,
      gang: req.gang,
      code: lost?.code === 'ALREADY_EXISTS' ? ErrorCode.NO_FIT : (lost?.code ?? ErrorCode.NO_FIT),
      reason: `every donor that could hold gang ${req.gang} was taken by concurrent placements${lost ? `; last: ${lost.reason}` : ''}`,
      verdicts,
    };
  }

  /** One plan's members as reservations, held in the view while the store decides. */
  private async reservePlan(
    origin: string,
    gang: string,
    members: GangPlacementRequest['members'],
    plan: GangPlan,
  ): Promise<GangReserveResult> {
    const { store, view, settings } = this.deps;
    const at = this.deps.now();
    const asks: ReserveRequest[] = plan.members.map((c, i) => ({
      id: randomUUID(),
      origin,
      donor: c.donor,
      node: c.node,
      resource: c.resource,
      gpus: c.gpus,
      pod: members[i]!.pod,
      ttlMs: settings.reservationTtlMs,
      peeringMaxGpus: c.peeringMaxGpus,
      donorMaxGpus: c.donorMaxGpus,
      donorMaxGpusPerOrigin: c.donorMaxGpusPerOrigin,
    }));
    const expiresAt = new Date(at.getTime() + settings.reservationTtlMs).toISOString();
    for (const a of asks) {
      const {
        ttlMs: _t,
        peeringMaxGpus: _p,
        donorMaxGpus: _d,
        donorMaxGpusPerOrigin: _o,
        ...rest
      } = a;
      view.hold({ ...rest, state: 'open', createdAt: at.toISOString(), expiresAt });
    }
    try {
      return await store.reserveGang({ gang, members: asks }, at);
    } finally {
      for (const a of asks) view.unhold(a.id, a.donor);
    }
  }

  async simulateGang(origin: string, request: GangPlacementRequest): Promise<GangPlacementResult> {
    const req = await this.check(origin, request);
    const snap = await this.single.snapshot(origin, req.donors);
    const result = evaluateGang(snap, req, req.policy ?? this.deps.settings.policy);
    const best = result.plans[0];
    if (result.refusal || !best) {
      return {
        placed: false,
        gang: req.gang,
        code: result.refusal?.code ?? ErrorCode.NO_FIT,
        reason: result.refusal?.reason ?? 'no candidate',
        verdicts: result.verdicts,
      };
    }
    const expiresAt = new Date(
      snap.now.getTime() + this.deps.settings.reservationTtlMs,
    ).toISOString();
    return {
      placed: true,
      simulated: true,
      gang: req.gang,
      donor: best.donor,
      verdicts: result.verdicts,
      reservations: best.members.map((c, i) => ({
        id: '',
        origin,
        donor: c.donor,
        node: c.node,
        resource: c.resource,
        gpus: c.gpus,
        pod: req.members[i]!.pod,
        state: 'open',
        createdAt: snap.now.toISOString(),
        expiresAt,
      })),
    };
  }
}
