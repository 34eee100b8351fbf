import { describe, expect, it } from 'vitest';
import { isSpillwayError } from '@spillway/common';
import { validatePlacementRequest } from '../core/validate.js';
import type { PlacementRequest } from '../core/api.js';
import { placeRequestFromProto } from '../grpc/convert.js';
import { labelRequirement, nodeRequirementsOf } from './constraints.js';

/**
 * The label-requirement rule has one home (labelRequirement); every way a requirement
 * enters the broker — a pod's required node affinity, the core's PlacementRequest (REST
 * simulate), the gRPC PlaceRequest — gives the same verdict and message for it.
 */

type Verdict = { ok: true } | { ok: false; field: string; message: string };

function verdict(fn: () => unknown, prefix: string): Verdict {
  try {
    fn();
    return { ok: true };
  } catch (err) {
    if (!isSpillwayError(err)) throw err;
    // Each layer names the requirement its own way; what follows the prefix must agree.
    const field = err.field ?? '';
    expect(field.startsWith(prefix), `${field} under ${prefix}`).toBe(true);
    return {
      ok: false,
      field: field.slice(prefix.length),
      message: err.message.split(': ').pop()!,
    };
  }
}

const viaPod = (operator: string, values: string[]): Verdict =>
  verdict(
    () =>
      nodeRequirementsOf({
        spec: {
          affinity: {
            nodeAffinity: {
              requiredDuringSchedulingIgnoredDuringExecution: {
                nodeSelectorTerms: [{ matchExpressions: [{ key: 'k', operator, values }] }],
              },
            },
          },
        },
      }),
    'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]',
  );

const viaCore = (operator: string, values: string[]): Verdict =>
  verdict(
    () =>
      validatePlacementRequest('lab', {
        pod: { originCluster: 'lab', namespace: 'ml', name: 'p', uid: 'u' },
        resource: 'nvidia.com/gpu',
        gpus: 1,
        nodeRequirements: [{ key: 'k', operator, values }],
        tolerations: [],
        donors: [],
      } as unknown as PlacementRequest),
    'nodeRequirements[0]',
  );

const viaGrpc = (operator: string, values: string[]): Verdict =>
  verdict(
    () =>
      placeRequestFromProto({
        pod: { origin_cluster: 'lab', namespace: 'ml', name: 'p', uid: 'u' },
        resource_name: 'nvidia.com/gpu',
        gpus: 1,
        node_requirements: [{ key: 'k', operator, values }],
        tolerations: [],
        cpu_millis: '0',
        memory_bytes: '0',
        donors: [],
      }),
    'node_requirements[0]',
  );

describe('label requirements', () => {
  it.each([
    ['In', ['a'], undefined],
    ['In', [], '.values'],
    ['NotIn', [], '.values'],
    ['Exists', [], undefined],
    ['Exists', ['a'], '.values'],
    ['DoesNotExist', ['a'], '.values'],
    ['Gt', ['7'], undefined],
    ['Gt', ['x'], '.values'],
    ['Lt', ['1', '2'], '.values'],
    ['Near', ['a'], '.operator'],
  ] as [string, string[], string | undefined][])(
    '%s %j: the same verdict on every path',
    (operator, values, field) => {
      const expected = field === undefined ? { ok: true } : { ok: false, field };
      const direct = verdict(() => labelRequirement('k', operator, values, 'r'), 'r');
      expect(direct).toMatchObject(expected);
      for (const path of [viaPod, viaCore, viaGrpc]) {
        expect(path(operator, values)).toEqual(direct);
      }
    },
  );
});
