// spillctl join: a join token and the manifests; with --local, the agent and shim run here.
import { resolve } from 'node:path';
import { ErrorCode, SpillwayError } from '@spillway/common';
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';
import { applyJoinManifests, deleteSecret, hasSecret, kubeConfigFor, serverOf } from '../kube.js';
import { componentEntry, logTail, startLocal, type StartedProcess } from '../local.js';
import {
  DEFAULT_IDENTITY_SECRET,
  helmCommand,
  joinManifests,
  runsVirtualNode,
  type JoinRole,
} from '../manifests.js';
import { renderData, type OutputFormat } from '../output.js';
import { waitFor } from '../wait.js';

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
