import { resolve } from 'node:path';
import { ErrorCode, SpillwayError, formatDuration, tenantNamespace } from '@spillway/common';
import type { PeeringView, ReservationRecord } from '@spillway/broker';
import { brokerInit } from './broker-init.js';
import type { Context } from './context.js';
import { UsageError } from './errors.js';
import {
  applyJoinManifests,
  deleteSecret,
  hasSecret,
  kubeConfigFor,
  nodeReady,
  readVirtualNode,
  serverOf,
  setNamespaceOffload,
} from './kube.js';
import {
  componentEntry,
  listLocal,
  localClusters,
  logTail,
  startLocal,
  stopLocal,
  type StartedProcess,
} from './local.js';
import {
  DEFAULT_IDENTITY_SECRET,
  helmCommand,
  joinManifests,
  runsVirtualNode,
  type JoinRole,
} from './manifests.js';
import {
  CAPACITY_COLUMNS,
  CLUSTER_COLUMNS,
  OFFLOAD_COLUMNS,
  PEERING_COLUMNS,
  describeCluster,
  render,
  renderData,
  renderSimulation,
  type OutputFormat,
} from './output.js';
import { writeSettings } from './settings.js';
import { waitFor } from './wait.js';
import { virtualNodeName } from '@spillway/common';

const LIVE_STATES = 'open,bound';
const FORCE_MIN_WAIT_MS = 60_000;

// ---------------------------------------------------------------------------------------
// broker init

export interface BrokerInitFlags {
  dir: string;
  force?: boolean;
  serverDnsNames: string[];
  serverIps: string[];
  adminName: string;
  broker: string;
  writeConfig: boolean;
  output: OutputFormat;
}

export async function cmdBrokerInit(ctx: Context, f: BrokerInitFlags): Promise<void> {
  const result = await brokerInit({
    dir: resolve(ctx.io.cwd, f.dir),
    force: f.force === true,
    dnsNames: f.serverDnsNames,
    ipAddresses: f.serverIps,
    adminName: f.adminName,
  });
  if (f.writeConfig) {
    writeSettings(ctx.configPath, {
      server: ctx.server,
      token: result.adminToken,
      broker: f.broker,
      caFile: result.caFile,
      clientCertificate: result.adminCertFile,
      clientKey: result.adminKeyFile,
    });
  }
  if (f.output === 'json' || f.output === 'yaml') {
    ctx.out(
      renderData(
        {
          ...result,
          server: ctx.server,
          broker: f.broker,
          configFile: f.writeConfig ? ctx.configPath : null,
        },
        f.output,
      ),
    );
    return;
  }
  const lines = result.files.map((x) => `wrote ${x.path} (${x.mode})`);
  lines.push(
    f.writeConfig
      ? `admin token ${result.adminTokenId} saved to ${ctx.configPath} (server ${ctx.server}, broker ${f.broker})`
      : `admin token (shown once): ${result.adminToken}`,
    '',
    'Start the broker on this directory:',
    `  spillway-broker --pki-dir ${result.dir}`,
    'then join clusters:',
    `  spillctl join <cluster-name> --role donor --kubeconfig <file>`,
  );
  ctx.out(`${lines.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------
// join

export interface JoinFlags {
  broker?: string;
  role: JoinRole;
  namespace: string;
  ttl: string;
  caFile?: string;
  local?: boolean;
  rejoin?: boolean;
  timeout: number;
  logLevel: string;
  /** Extra flags for the --local agent / shim, e.g. --virtual-node-flag=--grace-period=2s. */
  agentFlag?: string[];
  virtualNodeFlag?: string[];
  output: OutputFormat;
}

export async function cmdJoin(ctx: Context, cluster: string, f: JoinFlags): Promise<void> {
  const broker = f.broker ?? ctx.settings.broker;
  if (!broker) {
    throw new UsageError(
      `--broker is required: the broker's gRPC address, e.g. 127.0.0.1:7443 (or set broker: in ${ctx.configPath})`,
      '--broker',
    );
  }
  const ca = ctx.caPem(f.caFile);
  const kc = kubeConfigFor(ctx.globals);
  const progress = ctx.progress();
  const identitySecret = DEFAULT_IDENTITY_SECRET;
  try {
    if (await hasSecret(kc, f.namespace, identitySecret)) {
      if (f.rejoin) {
        await deleteSecret(kc, f.namespace, identitySecret);
      } else {
        ctx.warn(
          `${f.namespace}/${identitySecret} already holds a broker identity in ${serverOf(kc)}: the agent keeps using it and ignores the new token (pass --rejoin to replace it)`,
        );
      }
    }
    progress.update(`creating a join token for ${cluster} (${f.role})`);
    const issued = await ctx.rest.createJoinToken({ clusterId: cluster, role: f.role, ttl: f.ttl });
    progress.update(
      `installing namespace, service accounts, RBAC and the token Secret into ${serverOf(kc)}`,
    );
    const manifests = joinManifests({
      clusterId: cluster,
      role: f.role,
      namespace: f.namespace,
      token: issued.token,
      caPem: ca.pem,
      broker,
      joinTokenSecret: 'spillway-join-token',
    });
    const objects = await applyJoinManifests(kc, manifests);
    progress.done(
      `installed ${objects.length} objects into ${serverOf(kc)} (namespace ${f.namespace})`,
    );

    const result: Record<string, unknown> = {
      cluster,
      role: f.role,
      namespace: f.namespace,
      broker,
      tokenExpiresAt: issued.expiresAt,
      objects,
    };
    if (!f.local) {
      const helm = helmCommand({
        clusterId: cluster,
        role: f.role,
        namespace: f.namespace,
        broker,
        joinTokenSecret: 'spillway-join-token',
        ...(ctx.globals.kubeconfig ? { kubeconfig: ctx.globals.kubeconfig } : {}),
        ...(ctx.globals.context ? { context: ctx.globals.context } : {}),
      });
      result.helm = helm;
      if (f.output === 'json' || f.output === 'yaml') return ctx.out(renderData(result, f.output));
      ctx.out(
        `cluster ${cluster} is ready to join as ${f.role}; the token expires at ${issued.expiresAt}.\n` +
          `Finish the install with:\n\n  ${helm}\n\n` +
          `or run the parts here: spillctl join ${cluster} --local ...\n`,
      );
      return;
    }

    result.local = await startLocalParts(ctx, cluster, f, broker, kc.getCurrentContext(), progress);
    if (f.output === 'json' || f.output === 'yaml') return ctx.out(renderData(result, f.output));
    const local = result.local as Record<string, { pid: number; log: string } | null>;
    const parts = Object.entries(local)
      .filter(([, v]) => v)
      .map(([k, v]) => `${k} pid ${v!.pid} (log ${v!.log})`);
    ctx.out(`cluster ${cluster} joined as ${f.role}: ${parts.join(', ')}\n`);
  } finally {
    progress.stop();
  }
}

async function startLocalParts(
  ctx: Context,
  cluster: string,
  f: JoinFlags,
  broker: string,
  currentContext: string,
  progress: ReturnType<Context['progress']>,
): Promise<Record<string, unknown>> {
  const kubeconfig = ctx.globals.kubeconfig ?? ctx.io.env.KUBECONFIG;
  const kubeArgs = [
    ...(kubeconfig ? ['--kubeconfig', resolve(ctx.io.cwd, kubeconfig)] : []),
    '--context',
    ctx.globals.context ?? currentContext,
  ];
  const deadline = Date.now() + f.timeout;
  const left = (): number => Math.max(1000, deadline - Date.now());
  const agentEntry = componentEntry('agent', ctx.io.env);
  if (!agentEntry) {
    throw new SpillwayError(
      ErrorCode.NOT_FOUND,
      'the agent is not built (packages/agent/dist/main.js); run `npm run build` first',
    );
  }
  const agent = startLocal({
    stateDir: ctx.stateDir,
    cluster,
    component: 'agent',
    entry: agentEntry,
    args: [
      '--broker-address',
      broker,
      ...kubeArgs,
      '--namespace',
      f.namespace,
      '--log-level',
      f.logLevel,
      ...(f.agentFlag ?? []),
    ],
  });
  progress.update(`waiting for the agent of ${cluster} (pid ${agent.pid}) to connect`);
  await waitFor(
    async () => {
      checkAlive(agent);
      const c = await ctx.rest.getCluster(cluster);
      return c.state === 'Ready' && c.connections.agent ? c : undefined;
    },
    {
      timeoutMs: left(),
      what: `the agent of ${cluster} to connect`,
      signal: ctx.io.interrupted,
      detail: () => `see ${agent.log}`,
    },
  );
  progress.done(`agent of ${cluster} connected (pid ${agent.pid})`);
  const out: Record<string, unknown> = { agent: { pid: agent.pid, log: agent.log } };
  if (!runsVirtualNode(f.role)) return out;

  const shimEntry = componentEntry('virtual-node', ctx.io.env);
  if (!shimEntry) {
    ctx.warn(
      `the virtual-node shim is not built (packages/virtual-node/dist/main.js): ${cluster} can lend but will not offload its pods until it runs`,
    );
    out['virtual-node'] = null;
    return out;
  }
  const shim = startLocal({
    stateDir: ctx.stateDir,
    cluster,
    component: 'virtual-node',
    entry: shimEntry,
    args: [
      '--broker-address',
      broker,
      ...kubeArgs,
      '--namespace',
      f.namespace,
      // The API server runs on this host too; several local shims each pick a free port.
      '--node-address',
      '127.0.0.1',
      '--kubelet-bind-address',
      '127.0.0.1',
      '--kubelet-port',
      '0',
      '--log-level',
      f.logLevel,
      ...(f.virtualNodeFlag ?? []),
    ],
  });
  progress.update(`waiting for the virtual-node shim of ${cluster} (pid ${shim.pid}) to connect`);
  await waitFor(
    async () => {
      checkAlive(shim);
      const c = await ctx.rest.getCluster(cluster);
      return c.connections['virtual-node'] ? c : undefined;
    },
    {
      timeoutMs: left(),
      what: `the virtual-node shim of ${cluster} to connect`,
      signal: ctx.io.interrupted,
      detail: () => `see ${shim.log}`,
    },
  );
  progress.done(`virtual-node shim of ${cluster} connected (pid ${shim.pid})`);
  out['virtual-node'] = { pid: shim.pid, log: shim.log };
  return out;
}

function checkAlive(p: StartedProcess): void {
  const exit = p.exited();
  if (!exit) return;
  const tail = logTail(p.log, 3).replace(/\s*\n\s*/g, ' | ');
  throw new SpillwayError(
    ErrorCode.UNAVAILABLE,
    `the ${p.component} of ${p.cluster} exited (${exit.signal ?? `code ${exit.code}`}); log ${p.log}${tail ? `: ${tail}` : ''}`,
  );
}

// ---------------------------------------------------------------------------------------
// local processes

export async function cmdLocalStop(ctx: Context, clusters: string[], all: boolean): Promise<void> {
  if (clusters.length === 0 && !all) {
    throw new UsageError('name the clusters to stop, or pass --all');
  }
  const names = all ? localClusters(ctx.stateDir) : clusters;
  let count = 0;
  for (const name of names) {
    for (const p of await stopLocal(ctx.stateDir, name)) {
      ctx.out(`stopped ${p.component} of ${p.cluster} (pid ${p.pid})\n`);
      count++;
    }
  }
  if (count === 0) ctx.out('nothing was running\n');
}

export function cmdLocalList(ctx: Context, output: OutputFormat): void {
  const rows = listLocal(ctx.stateDir);
  ctx.out(
    render(
      output,
      { processes: rows },
      rows,
      [
        { header: 'CLUSTER', value: (r) => r.cluster },
        { header: 'COMPONENT', value: (r) => r.component },
        { header: 'PID', value: (r) => String(r.pid) },
        { header: 'STATUS', value: (r) => (r.running ? 'running' : 'exited') },
        { header: 'STARTED', value: (r) => r.startedAt },
        { header: 'LOG', value: (r) => r.log, wide: true },
      ],
      `No local processes under ${ctx.stateDir}.`,
    ),
  );
}

// ---------------------------------------------------------------------------------------
// get / describe

export const RESOURCES = {
  clusters: ['cluster', 'clusters', 'cl'],
  capacity: ['capacity', 'cap'],
  peerings: ['peering', 'peerings', 'peer'],
  offloads: ['offload', 'offloads', 'off'],
} as const;
export type Resource = keyof typeof RESOURCES;
export const RESOURCE_NAMES = Object.values(RESOURCES).flat();

export function resourceOf(word: string): Resource {
  for (const [r, names] of Object.entries(RESOURCES)) {
    if ((names as readonly string[]).includes(word)) return r as Resource;
  }
  throw new UsageError(
    `unknown resource "${word}"; one of: clusters, capacity, peerings, offloads`,
  );
}

export interface GetFlags {
  output: OutputFormat;
  origin?: string;
  donor?: string;
  state?: string;
  gpuProduct?: string;
  resource?: string;
  minGpuMemory?: number;
}

const GET_FLAGS: Record<Resource, (keyof GetFlags)[]> = {
  clusters: [],
  capacity: ['gpuProduct', 'origin', 'resource', 'minGpuMemory'],
  peerings: ['origin', 'donor'],
  offloads: ['origin', 'donor', 'state'],
};

const FLAG_NAMES: Partial<Record<keyof GetFlags, string>> = {
  origin: '--origin',
  donor: '--donor',
  state: '--state',
  gpuProduct: '--gpu-product',
  resource: '--resource',
  minGpuMemory: '--min-gpu-memory',
};

export async function cmdGet(
  ctx: Context,
  word: string,
  name: string | undefined,
  f: GetFlags,
): Promise<void> {
  const resource = resourceOf(word);
  for (const [k, flag] of Object.entries(FLAG_NAMES)) {
    if (
      f[k as keyof GetFlags] !== undefined &&
      !GET_FLAGS[resource].includes(k as keyof GetFlags)
    ) {
      throw new UsageError(`${flag} does not apply to "get ${resource}"`, flag);
    }
  }
  if (name !== undefined && resource !== 'clusters') {
    throw new UsageError(
      `"get ${resource}" takes no name; filter with ${GET_FLAGS[resource].map((k) => FLAG_NAMES[k]).join(', ')}`,
    );
  }
  switch (resource) {
    case 'clusters': {
      if (name !== undefined) {
        const c = await ctx.rest.getCluster(name);
        return ctx.out(render(f.output, c, [c], CLUSTER_COLUMNS));
      }
      const data = await ctx.rest.listClusters();
      return ctx.out(
        render(f.output, data, data.clusters, CLUSTER_COLUMNS, 'No clusters have joined.'),
      );
    }
    case 'capacity': {
      const data = await ctx.rest.capacity({
        gpuProduct: f.gpuProduct,
        origin: f.origin,
        resource: f.resource,
        minGpuMemoryMiB: f.minGpuMemory === undefined ? undefined : String(f.minGpuMemory),
      });
      let text = render(f.output, data, data.rows, CAPACITY_COLUMNS, 'No GPUs are reported.');
      if (f.output === 'table' || f.output === 'wide') {
        text += `\nTotal: ${data.totals.free} free of ${data.totals.allocatable} GPUs\n`;
      }
      return ctx.out(text);
    }
    case 'peerings': {
      const data = await ctx.rest.listPeerings(defined({ origin: f.origin, donor: f.donor }));
      return ctx.out(render(f.output, data, data.peerings, PEERING_COLUMNS, 'No peerings.'));
    }
    case 'offloads': {
      const data = await ctx.rest.offloads(
        defined({ origin: f.origin, donor: f.donor, state: f.state }),
      );
      return ctx.out(render(f.output, data, data.offloads, OFFLOAD_COLUMNS, 'No offloads.'));
    }
  }
}

export async function cmdDescribe(
  ctx: Context,
  kind: string,
  name: string,
  output: OutputFormat,
): Promise<void> {
  if (kind !== 'cluster' && kind !== 'clusters' && kind !== 'cl') {
    throw new UsageError(`cannot describe "${kind}"; only: cluster`);
  }
  const c = await ctx.rest.getCluster(name);
  ctx.out(output === 'json' || output === 'yaml' ? renderData(c, output) : describeCluster(c));
}

function defined<T extends Record<string, string | undefined>>(o: T): Record<string, string> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Record<
    string,
    string
  >;
}

// ---------------------------------------------------------------------------------------
// cordon / uncordon / offload namespace

export async function cmdCordon(
  ctx: Context,
  cluster: string,
  cordoned: boolean,
  output: OutputFormat,
): Promise<void> {
  const view = await ctx.rest.patchCluster(cluster, { cordoned });
  if (output === 'json' || output === 'yaml') return ctx.out(renderData(view, output));
  ctx.out(
    cordoned
      ? `cluster ${cluster} cordoned: it takes no new placements; running offloads stay\n`
      : `cluster ${cluster} uncordoned\n`,
  );
}

export async function cmdOffloadNamespace(
  ctx: Context,
  namespace: string,
  disable: boolean,
): Promise<void> {
  const kc = kubeConfigFor(ctx.globals);
  await setNamespaceOffload(kc, namespace, !disable);
  ctx.out(
    disable
      ? `namespace ${namespace} no longer offloads pending GPU pods (${serverOf(kc)})\n`
      : `namespace ${namespace} offloads pending GPU pods to peered donors (label spillway.io/offload=enabled, ${serverOf(kc)})\n`,
  );
}

// ---------------------------------------------------------------------------------------
// simulate

export interface SimulateFlags {
  origin: string;
  gpus: number;
  gpuProduct?: string;
  resource: string;
  selector?: Record<string, string>;
  donor?: string[];
  policy?: 'binpack' | 'spread' | 'cost';
  output: OutputFormat;
}

export async function cmdSimulate(ctx: Context, f: SimulateFlags): Promise<void> {
  const nodeSelector = {
    ...(f.selector ?? {}),
    ...(f.gpuProduct ? { 'nvidia.com/gpu.product': f.gpuProduct } : {}),
  };
  const result = await ctx.rest.simulate({
    origin: f.origin,
    gpus: f.gpus,
    resource: f.resource,
    ...(Object.keys(nodeSelector).length ? { nodeSelector } : {}),
    ...(f.donor?.length ? { donors: f.donor } : {}),
    ...(f.policy ? { policy: f.policy } : {}),
  });
  ctx.out(renderSimulation(result, f.output));
}

// ---------------------------------------------------------------------------------------
// peer / unpeer

export interface PeerFlags {
  maxGpus?: number;
  gpuProduct?: string[];
  wait?: boolean;
  timeout: number;
  output: OutputFormat;
}

async function findPeering(
  ctx: Context,
  origin: string,
  donor: string,
): Promise<PeeringView | undefined> {
  const { peerings } = await ctx.rest.listPeerings({ origin, donor });
  return peerings.find((p) => p.origin === origin && p.donor === donor);
}

export async function cmdPeer(
  ctx: Context,
  origin: string,
  donor: string,
  f: PeerFlags,
): Promise<void> {
  if (origin === donor) throw new UsageError('a cluster cannot peer with itself');
  const before = await findPeering(ctx, origin, donor);
  let view = await ctx.rest.createPeering({
    origin,
    donor,
    ...(f.maxGpus !== undefined ? { maxGpus: f.maxGpus } : {}),
    ...(f.gpuProduct ? { gpuProducts: f.gpuProduct } : {}),
  });
  if (f.wait) {
    const progress = ctx.progress();
    try {
      progress.update(`waiting for donor ${donor} to be Ready`);
      view = await waitFor(
        async () => {
          const p = await findPeering(ctx, origin, donor);
          return p?.donorState === 'Ready' ? p : undefined;
        },
        { timeoutMs: f.timeout, what: `donor ${donor} to be Ready`, signal: ctx.io.interrupted },
      );
      progress.done(`donor ${donor} is Ready and lends ${lendableText(view)}`);
      // The virtual node lives in the origin: check it only when we can see the origin.
      if (ctx.globals.kubeconfig || ctx.io.env.KUBECONFIG) {
        const kc = kubeConfigFor(ctx.globals);
        progress.update(
          `waiting for virtual node ${virtualNodeName(donor)} in ${origin} to be Ready`,
        );
        await waitFor(
          async () => (nodeReady(await readVirtualNode(kc, donor)) ? true : undefined),
          {
            timeoutMs: f.timeout,
            what: `virtual node ${virtualNodeName(donor)} in ${origin} to be Ready`,
            signal: ctx.io.interrupted,
          },
        );
        progress.done(`virtual node ${virtualNodeName(donor)} is Ready in ${origin}`);
      }
    } finally {
      progress.stop();
    }
  }
  if (f.output === 'json' || f.output === 'yaml') return ctx.out(renderData(view, f.output));
  ctx.out(`peering ${origin} -> ${donor} ${before ? 'updated' : 'created'}\n`);
}

function lendableText(p: PeeringView): string {
  const e = Object.entries(p.lendable);
  return e.length ? e.map(([r, n]) => `${n} ${r}`).join(', ') : 'no GPUs right now';
}

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

// ---------------------------------------------------------------------------------------
// tokens

export async function cmdTokenCreate(
  ctx: Context,
  role: 'admin' | 'viewer',
  description: string | undefined,
  output: OutputFormat,
): Promise<void> {
  const t = await ctx.rest.createApiToken({ role, ...(description ? { description } : {}) });
  if (output === 'json' || output === 'yaml') return ctx.out(renderData(t, output));
  ctx.out(`${t.token}\n`);
}
