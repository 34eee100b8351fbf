import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '@spillway/common';
import type { ViewFeed, ViewNotice } from './store.js';

/**
 * The replicas' view feed over Redis pub/sub on `channel`: publishes on the store's client,
 * listens on a duplicate of it. A replica never hears its own notices.
 */
export function openRedisFeed(
  client: Redis,
  channel: string,
  opts: { isClosed(): boolean; logger?: Logger },
): ViewFeed {
  const self = randomUUID();
  const logger = opts.logger;
  let sub: Redis | undefined;
  return {
    publish: (notice) => {
      if (opts.isClosed() || client.status !== 'ready') return;
      client.publish(channel, JSON.stringify({ from: self, notice })).catch((err: unknown) => {
        // A lost notice is repaired by the next full re-read of the view.
        logger?.debug({ err, notice: notice.k }, 'view notice not published');
      });
    },
    subscribe: async (onNotice) => {
      sub = client.duplicate({ enableOfflineQueue: true });
      sub.on('error', (err: Error) =>
        logger?.debug({ err: err.message }, 'view feed connection error'),
      );
      sub.on('message', (_channel: string, message: string) => {
        try {
          const m = JSON.parse(message) as { from?: string; notice?: ViewNotice };
          if (m.from !== self && m.notice) onNotice(m.notice);
        } catch (err) {
          logger?.warn({ err }, 'unreadable view notice ignored');
        }
      });
      await sub.subscribe(channel);
    },
    close: async () => {
      const s = sub;
      sub = undefined;
      if (!s) return;
      await s.quit().catch((err: unknown) => {
        logger?.debug({ err }, 'view feed quit failed; disconnecting');
        s.disconnect();
      });
    },
  };
}
