import type * as grpc from '@grpc/grpc-js';
import { MAX_MESSAGE_BYTES } from '@spillway/api';
import type {
  CreatePodRequest__Output,
  CreatePodResponse,
  DeletePodRequest__Output,
  DeletePodResponse,
  JoinRequest__Output,
  JoinResponse,
  ListPodsRequest__Output,
  ListPodsResponse,
  LogChunk,
  LogsRequest__Output,
  PlaceGangRequest__Output,
  PlaceGangResponse,
  PlaceRequest__Output,
  PlaceResponse,
  ReleaseRequest__Output,
  ReleaseResponse,
  RenewRequest__Output,
  RenewResponse,
} from '@spillway/api';
import { ErrorCode, SpillwayError, invalid, type Logger } from '@spillway/common';
import type { BrokerCore } from '../core/api.js';
import type { AuthenticatedCall, PeerIdentity } from './auth.js';
import { gangResultToProto, placeGangRequestFromProto } from './convert-gang.js';
import {
  clusterId as clusterIdField,
  dnsName,
  int,
  placeRequestFromProto,
  placementResultToProto,
  podRefFromProto,
  str,
} from './convert.js';
import { isMalformed, logFailure, malformedError, toServiceError } from './errors.js';
import { okOrThrow, type CommandRelay } from './relay.js';
import type { Router } from './router.js';

const JOIN_TOKEN_MAX = 512;

export interface ServiceDeps {
  core: BrokerCore;
  router: Router;
  logger: Logger;
  auth: (call: AuthenticatedCall) => Promise<PeerIdentity>;
  commands: CommandRelay;
}

/** The unary ClusterService calls (Join, Renew), PodService and PlacementService. */
export function createServiceHandlers(deps: ServiceDeps) {
  const { core, router, logger, auth } = deps;
  const relay: CommandRelay['relay'] = (...args) => deps.commands.relay(...args);
  /**
   * Caller must be the pod's origin, and peered with the donor. A draining peering allows
   * everything but creating pods, so the pods it still runs can be watched and deleted.
   */
  async function authorizePod(
    caller: string,
    donorField: unknown,
    podField: unknown,
    allowDraining = true,
  ): Promise<{ donor: string; pod: ReturnType<typeof podRefFromProto> | undefined }> {
    const donor = clusterIdField(donorField, 'donor_cluster');
    const pod =
      podField === undefined
        ? undefined
        : podRefFromProto(podField as Parameters<typeof podRefFromProto>[0]);
    if (pod && pod.originCluster !== caller) {
      throw new SpillwayError(
        ErrorCode.PERMISSION_DENIED,
        `pod.origin_cluster: ${pod.originCluster} is not the caller (${caller}); a cluster may only act for its own pods`,
        { field: 'pod.origin_cluster' },
      );
    }
    await core.assertPeered(caller, donor, { allowDraining });
    return { donor, pod };
  }

  // ---- handlers ---------------------------------------------------------------------------

  type Peered = PeerIdentity | undefined;

  function unary<Req, Res>(
    name: string,
    needsCert: boolean,
    fn: (req: Req, peer: Peered) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      void (async () => {
        try {
          if (isMalformed(call.request)) throw malformedError(call.request, name);
          const peer = needsCert ? await auth(call) : undefined;
          callback(null, await fn(call.request, peer));
        } catch (err) {
          logFailure(logger, err, `${name} failed`);
          callback(toServiceError(err));
        }
      })();
    };
  }

  const clusterHandlers = {
    Join: unary<JoinRequest__Output, JoinResponse>('JoinRequest', false, async (req) => {
      const token = str(req.token, 'token', { required: true, max: JOIN_TOKEN_MAX });
      const csr = str(req.csr_pem, 'csr_pem', { required: true, max: 16 * 1024 });
      const r = await core.join(token, csr);
      return {
        cluster_id: r.clusterId,
        certificate_pem: r.certificatePem,
        ca_pem: r.caPem,
        not_after: r.notAfter,
      };
    }),
    Renew: unary<RenewRequest__Output, RenewResponse>('RenewRequest', true, async (req, peer) => {
      const csr = str(req.csr_pem, 'csr_pem', { required: true, max: 16 * 1024 });
      const r = await core.renew(peer!.clusterId, csr);
      return { certificate_pem: r.certificatePem, ca_pem: r.caPem, not_after: r.notAfter };
    }),
  };

  const podHandlers = {
    CreatePod: unary<CreatePodRequest__Output, CreatePodResponse>(
      'CreatePodRequest',
      true,
      async (req, peer) => {
        const caller = peer!.clusterId;
        const { donor, pod } = await authorizePod(
          caller,
          req.donor_cluster,
          req.pod ?? null,
          false,
        );
        const reservationId = str(req.reservation_id, 'reservation_id', { max: 128 });
        if (req.node_name) dnsName(req.node_name, 'node_name');
        const podJson = str(req.pod_json, 'pod_json', { required: true, max: MAX_MESSAGE_BYTES });
        let parsed: unknown;
        try {
          parsed = JSON.parse(podJson);
        } catch {
          throw invalid('pod_json', 'is not JSON');
        }
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
          throw invalid('pod_json', 'must be a JSON object (v1.Pod)');
        }
        for (const field of ['config_maps_json', 'secrets_json'] as const) {
          const items = req[field] ?? [];
          if (items.length > 256) throw invalid(field, 'at most 256 entries');
          items.forEach((s, i) =>
            str(s, `${field}[${i}]`, { required: true, max: MAX_MESSAGE_BYTES }),
          );
        }
        // The GPUs must still be held for it: an expired reservation's may be promised again.
        if (reservationId !== '' && pod)
          await core.assertReservationLive(caller, donor, pod.uid, reservationId);
        const r = okOrThrow(await relay(caller, donor, { create_pod: req }), donor);
        return r.create_pod ?? {};
      },
    ),
    DeletePod: unary<DeletePodRequest__Output, DeletePodResponse>(
      'DeletePodRequest',
      true,
      async (req, peer) => {
        const caller = peer!.clusterId;
        const { donor } = await authorizePod(caller, req.donor_cluster, req.pod ?? null);
        int(req.grace_period_seconds, 'grace_period_seconds', { min: -1, max: 31_536_000 });
        const r = okOrThrow(await relay(caller, donor, { delete_pod: req }), donor);
        return r.delete_pod ?? {};
      },
    ),
    ListPods: unary<ListPodsRequest__Output, ListPodsResponse>(
      'ListPodsRequest',
      true,
      async (req, peer) => {
        const caller = peer!.clusterId;
        const { donor } = await authorizePod(caller, req.donor_cluster, undefined);
        const r = okOrThrow(await relay(caller, donor, { list_pods: req }), donor);
        // The donor lists this origin's pods only; never pass on anything else it sends.
        return { pods: (r.list_pods?.pods ?? []).filter((p) => p.pod?.origin_cluster === caller) };
      },
    ),
    StreamLogs: streamLogs,
  };

  function streamLogs(call: grpc.ServerWritableStream<LogsRequest__Output, LogChunk>): void {
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort());
    void (async () => {
      try {
        if (isMalformed(call.request)) throw malformedError(call.request, 'LogsRequest');
        const peer = await auth(call);
        const req = call.request;
        const { donor } = await authorizePod(peer.clusterId, req.donor_cluster, req.pod ?? null);
        str(req.container, 'container', { max: 253 });
        int(req.tail_lines, 'tail_lines');
        int(req.since_seconds, 'since_seconds');
        const requestId = router.newRequestId();
        let failure: string | undefined;
        const r = await relay(
          peer.clusterId,
          donor,
          { logs: { ...req, request_id: requestId } },
          {
            requestId,
            signal: abort.signal,
            onChunk: (c) => {
              if (c.data && c.data.length > 0) call.write({ data: c.data });
              if (c.eof && c.error) failure = c.error;
              return c.eof;
            },
          },
        );
        // A CommandResult ends the logs too: an error from the donor, or a plain end.
        okOrThrow(r, donor);
        if (failure !== undefined)
          throw new SpillwayError(ErrorCode.UNAVAILABLE, `donor ${donor}: ${failure}`);
        call.end();
      } catch (err) {
        if (abort.signal.aborted) return;
        logFailure(logger, err, 'StreamLogs failed');
        call.emit('error', toServiceError(err));
      }
    })();
  }

  const placementHandlers = {
    Place: unary<PlaceRequest__Output, PlaceResponse>('PlaceRequest', true, async (req, peer) => {
      const caller = peer!.clusterId;
      const request = placeRequestFromProto(req);
      if (request.pod.originCluster !== caller) {
        throw new SpillwayError(
          ErrorCode.PERMISSION_DENIED,
          `pod.origin_cluster: ${request.pod.originCluster} is not the caller (${caller})`,
          { field: 'pod.origin_cluster' },
        );
      }
      return placementResultToProto(await core.place(caller, request));
    }),
    PlaceGang: unary<PlaceGangRequest__Output, PlaceGangResponse>(
      'PlaceGangRequest',
      true,
      async (req, peer) => {
        const caller = peer!.clusterId;
        const request = placeGangRequestFromProto(req);
        request.members.forEach((m, i) => {
          if (m.pod.originCluster !== caller) {
            throw new SpillwayError(
              ErrorCode.PERMISSION_DENIED,
              `members[${i}].pod.origin_cluster: ${m.pod.originCluster} is not the caller (${caller})`,
              { field: `members[${i}].pod.origin_cluster` },
            );
          }
        });
        return gangResultToProto(await core.placeGang(caller, request));
      },
    ),
    Release: unary<ReleaseRequest__Output, ReleaseResponse>(
      'ReleaseRequest',
      true,
      async (req, peer) => {
        const id = str(req.reservation_id, 'reservation_id', { required: true, max: 128 });
        const reason = str(req.reason, 'reason', { max: 1024 });
        return {
          released: await core.release(peer!.clusterId, id, reason || 'released by origin'),
        };
      },
    ),
  };

  return { cluster: clusterHandlers, pod: podHandlers, placement: placementHandlers };
}
