// spillctl unpeer: refused while pods run, unless --drain (wait) or --force (delete them).
import type { ReservationRecord } from '@spillway/api/rest';
import { ErrorCode, SpillwayError, formatDuration, tenantNamespace } from '@spillway/common';
import type { Context } from '../context.js';
import { renderData, type OutputFormat } from '../output.js';
import { waitFor } from '../wait.js';
import { findPeering } from './peer.js';

const LIVE_STATES = 'open,bound';
const FORCE_MIN_WAIT_MS = 60_000;

export interface UnpeerFlags {
  drain?: boolean;
  force?: boolean;
  timeout: number;
  output: OutputFormat;
}

function describeLive(live: ReservationRecord[]): string {
  const shown = live
    .slice(0, 5)
    .map((r) => `${r.pod.namespace}/${r.pod.name} (${r.remotePhase ?? r.state})`);
  return `${live.length} offloaded pod${live.length === 1 ? '' : 's'}: ${shown.join(', ')}${live.length > 5 ? ', …' : ''}`;
}

export async function cmdUnpeer(
  ctx: Context,
  origin: string,
  donor: string,
  f: UnpeerFlags,
): Promise<void> {
  const peering = await findPeering(ctx, origin, donor);
  if (!peering) {
    throw new SpillwayError(
      ErrorCode.NOT_FOUND,
      `origin ${origin} is not peered with donor ${donor}`,
    );
  }
  const liveNow = async (): Promise<ReservationRecord[]> =>
    (await ctx.rest.offloads({ origin, donor, state: LIVE_STATES })).offloads;
  const done = (how: string, removed: ReservationRecord[]): void => {
    if (f.output === 'json' || f.output === 'yaml') {
      ctx.out(
        renderData(
          { origin, donor, removed: true, how, podsRemoved: removed.map((r) => r.pod) },
          f.output,
        ),
      );
    } else {
      ctx.out(`peering ${origin} -> ${donor} removed (${how})\n`);
    }
  };

  let live = await liveNow();
  if (!f.drain && !f.force) {
    if (live.length > 0) {
      throw new SpillwayError(
        ErrorCode.CONFLICT,
        `${donor} still runs ${describeLive(live)} for ${origin}; pass --drain to wait for them, or --force to delete them`,
      );
    }
    await ctx.rest.deletePeering(origin, donor);
    return done('nothing was running', []);
  }

  const progress = ctx.progress();
  const started = Date.now();
  try {
    if (f.drain) {
      await ctx.rest.drainPeering(origin, donor);
      progress.update(`draining ${origin} -> ${donor}: no new placements`);
      try {
        await waitFor(
          async () => {
            live = await liveNow();
            if (live.length === 0) return true;
            progress.update(`draining ${origin} -> ${donor}: waiting for ${describeLive(live)}`);
            return undefined;
          },
          {
            timeoutMs: f.timeout,
            intervalMs: 1000,
            what: `${origin} -> ${donor} to drain`,
            signal: ctx.io.interrupted,
            detail: () => `still running: ${describeLive(live)}`,
          },
        );
        progress.done(`drained ${origin} -> ${donor} in ${formatDuration(Date.now() - started)}`);
        await ctx.rest.deletePeering(origin, donor);
        return done('drained', []);
      } catch (err) {
        if (!(f.force && err instanceof SpillwayError && err.code === ErrorCode.TIMEOUT)) {
          if (err instanceof SpillwayError && err.code === ErrorCode.TIMEOUT) {
            progress.fail(`drain of ${origin} -> ${donor} timed out`);
            throw new SpillwayError(
              ErrorCode.TIMEOUT,
              `${err.message}; the peering stays draining (no new placements): run unpeer again, add --force to delete them, or \`spillctl peer ${origin} ${donor}\` to resume`,
            );
          }
          throw err;
        }
        progress.fail(`drain timed out with ${describeLive(live)}; forcing`);
      }
    }
    // --force: the donor's agent deletes the tenant namespace, and with it the remote pods.
    const removed = live;
    await ctx.rest.deletePeering(origin, donor);
    progress.update(
      `peering removed; waiting for ${donor} to delete namespace ${tenantNamespace(origin)}${live.length ? ` and ${describeLive(live)}` : ''}`,
    );
    await waitFor(
      async () => {
        live = await liveNow();
        return live.length === 0 ? true : undefined;
      },
      {
        // A short --timeout is for the drain; deleting a namespace takes its own while.
        timeoutMs: Math.max(f.timeout, FORCE_MIN_WAIT_MS),
        intervalMs: 1000,
        what: `${donor} to delete the remote pods of ${origin}`,
        signal: ctx.io.interrupted,
        detail: () => `still reported: ${describeLive(live)} (the peering is already removed)`,
      },
    );
    progress.done(`remote pods of ${origin} on ${donor} deleted`);
    done(removed.length ? `forced; ${removed.length} remote pods deleted` : 'forced', removed);
  } finally {
    progress.stop();
  }
}
