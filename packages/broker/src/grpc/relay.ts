import type {
  ClusterMessage,
  ClusterMessage__Output,
  CommandResult__Output,
  CreatePodRequest__Output,
  DeletePodRequest__Output,
  ListPodsRequest__Output,
  LogChunk__Output,
  LogsRequest__Output,
} from '@spillway/api';
import { ErrorCode, SpillwayError, type Logger } from '@spillway/common';
import { commandResultError } from './errors.js';
import type { Router } from './router.js';

const CANCELLED_REMEMBERED = 10_000;

interface Pending {
  donor: string;
  onResult(r: CommandResult__Output): void;
  onChunk?(c: LogChunk__Output): void;
  onGone(err?: SpillwayError): void;
}

export type Op =
  | { create_pod: CreatePodRequest__Output }
  | { delete_pod: DeletePodRequest__Output }
  | { list_pods: ListPodsRequest__Output }
  | { logs: LogsRequest__Output };

function notConnected(donor: string): SpillwayError {
  return new SpillwayError(ErrorCode.UNAVAILABLE, `donor ${donor} is not connected`, {
    details: { donor },
  });
}

/** A donor's error answer as the SpillwayError it stands for. */
export function okOrThrow(r: CommandResult__Output, donor: string): CommandResult__Output {
  if (r.code !== 0) throw commandResultError(r.code, r.message, r.reason, donor);
  return r;
}

export interface CommandRelay {
  /**
   * Sends `op` to the donor's agent and waits for its CommandResult. For logs, `stream`
   * receives the chunks; its `onChunk` returns true on the last one, which settles too.
   */
  relay(
    origin: string,
    donor: string,
    op: Op,
    stream?: { requestId: string; onChunk(c: LogChunk__Output): boolean; signal: AbortSignal },
  ): Promise<CommandResult__Output>;
  /**
   * A CommandResult or LogChunk from `fromCluster` (the router hands them over). A log chunk
   * nobody here waits for any more makes the donor stop that stream.
   */
  onReply: (fromCluster: string, msg: ClusterMessage__Output | ClusterMessage) => void;
  /**
   * Tells `donor`'s agent to stop the streaming command `requestId` (best effort, once per
   * id): its reader is gone, or the replica that minted it no longer listens.
   */
  cancel: (donor: string, requestId: string, origin?: string) => void;
  /** Fails every command waiting on this donor (its agent stream is gone). */
  donorGone: (donor: string) => void;
  /** Fails every waiting command (the server stops). */
  allGone: () => void;
}

/** Commands relayed to donor agents through the router, and the answers they wait for. */
export function createCommandRelay(
  router: Router,
  commandTimeoutMs: number,
  logger: Logger,
): CommandRelay {
  const pending = new Map<string, Pending>();
  /** Request ids already cancelled, oldest first, so chunks in flight cause one cancel. */
  const cancelled = new Set<string>();

  function cancel(donor: string, requestId: string, origin = ''): void {
    if (cancelled.has(requestId)) return;
    cancelled.add(requestId);
    if (cancelled.size > CANCELLED_REMEMBERED) {
      const oldest = cancelled.values().next();
      if (!oldest.done) cancelled.delete(oldest.value);
    }
    logger.debug({ requestId, donor, origin }, 'cancelling a streaming command on the donor');
    router
      .send(donor, 'agent', {
        command: {
          request_id: router.newRequestId(),
          origin_cluster: origin,
          cancel_request_id: requestId,
        },
      })
      .then(
        (sent) => {
          // A donor without a stream has already stopped: its agent ends what the stream asked.
          if (!sent) logger.debug({ requestId, donor }, 'cancel not sent: donor not connected');
        },
        (err: unknown) => logger.warn({ err, requestId, donor }, 'cancel not sent'),
      );
  }

  function onReply(fromCluster: string, msg: ClusterMessage__Output | ClusterMessage): void {
    const id = msg.command_result?.request_id ?? msg.log_chunk?.request_id ?? '';
    const p = pending.get(id);
    if (!p) {
      logger.debug({ requestId: id, cluster: fromCluster }, 'reply for no waiting command');
      if (msg.log_chunk && msg.log_chunk.eof !== true) cancel(fromCluster, id);
      return;
    }
    if (p.donor !== fromCluster) {
      logger.warn(
        { requestId: id, cluster: fromCluster, donor: p.donor },
        'reply from a cluster the command was not sent to',
      );
      return;
    }
    if (msg.command_result) p.onResult(msg.command_result as CommandResult__Output);
    else if (msg.log_chunk) p.onChunk?.(msg.log_chunk as LogChunk__Output);
  }

  /**
   * Sends `op` to the donor's agent and waits for its CommandResult. For logs, `stream`
   * receives the chunks; its `onChunk` returns true on the last one, which settles too.
   */
  function relay(
    origin: string,
    donor: string,
    op: Op,
    stream?: { requestId: string; onChunk(c: LogChunk__Output): boolean; signal: AbortSignal },
  ): Promise<CommandResult__Output> {
    const requestId = stream?.requestId ?? router.newRequestId();
    return new Promise<CommandResult__Output>((resolve, reject) => {
      let settled = false;
      /** `finished`: the donor ended the stream itself (eof, a result, or its agent is gone). */
      const settle = (fn: () => void, finished = true): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        pending.delete(requestId);
        stream?.signal.removeEventListener('abort', onAbort);
        // A stream given up on here (its reader went, or the donor was too slow to answer)
        // would otherwise go on at the donor, a followed log for ever.
        if (stream && !finished) cancel(donor, requestId, origin);
        fn();
      };
      const timer = setTimeout(() => {
        settle(
          () =>
            reject(
              new SpillwayError(
                ErrorCode.TIMEOUT,
                `donor ${donor} did not answer within ${commandTimeoutMs} ms`,
              ),
            ),
          false,
        );
      }, commandTimeoutMs);
      const onAbort = (): void =>
        settle(
          () => reject(new SpillwayError(ErrorCode.CANCELLED, 'cancelled by the caller')),
          false,
        );
      const entry: Pending = {
        donor,
        onResult: (r) => settle(() => resolve(r)),
        onGone: (err) => settle(() => reject(err ?? notConnected(donor))),
      };
      if (stream) {
        stream.signal.addEventListener('abort', onAbort, { once: true });
        entry.onChunk = (c) => {
          // The donor answered: a followed log may now stay idle for as long as it likes.
          clearTimeout(timer);
          if (stream.onChunk(c))
            settle(() => resolve({ request_id: requestId, code: 0, message: '', reason: '' }));
        };
      }
      pending.set(requestId, entry);
      router
        .send(donor, 'agent', { command: { request_id: requestId, origin_cluster: origin, ...op } })
        .then(
          (ok) => {
            if (!ok) entry.onGone();
          },
          (err: unknown) =>
            settle(() =>
              reject(
                new SpillwayError(ErrorCode.UNAVAILABLE, `cannot reach donor ${donor}`, {
                  cause: err,
                }),
              ),
            ),
        );
    });
  }

  return {
    relay,
    onReply,
    cancel,
    donorGone: (donor) => {
      for (const p of [...pending.values()]) if (p.donor === donor) p.onGone();
    },
    allGone: () => {
      const stopping = new SpillwayError(ErrorCode.UNAVAILABLE, 'broker is shutting down');
      for (const p of [...pending.values()]) p.onGone(stopping);
    },
  };
}
