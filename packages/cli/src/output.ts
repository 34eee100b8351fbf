import { stringify } from 'yaml';
import type {
  CapacitySummary,
  ClusterDetail,
  ClusterView,
  PeeringView,
  PlacementResult,
  ReservationRecord,
  UsageKey,
  UsageRow,
} from '@spillway/api/rest';

/** -o values; `table` is the default. json and yaml print the broker's answer as it is. */
export const OUTPUT_FORMATS = ['table', 'wide', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
/** `get` also prints csv (get usage only). */
export const GET_OUTPUT_FORMATS = [...OUTPUT_FORMATS, 'csv'] as const;
export type GetOutputFormat = (typeof GET_OUTPUT_FORMATS)[number];

export interface Column<T> {
  header: string;
  value: (row: T) => string;
  /** Only with -o wide. */
  wide?: boolean;
}

/** kubectl-style columns: upper-case headers, left-aligned, three spaces apart. */
export function renderTable<T>(
  rows: readonly T[],
  columns: readonly Column<T>[],
  wide: boolean,
): string {
  const cols = columns.filter((c) => wide || !c.wide);
  const cells = [
    cols.map((c) => c.header),
    ...rows.map((r) => cols.map((c) => c.value(r) || '<none>')),
  ];
  const widths = cols.map((_, i) => Math.max(...cells.map((line) => line[i]!.length)));
  return (
    cells
      .map((line) =>
        line
          .map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!)))
          .join('   ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

/** json / yaml of any value, newline-terminated. */
export function renderData(value: unknown, format: 'json' | 'yaml'): string {
  return format === 'json' ? `${JSON.stringify(value, null, 2)}\n` : stringify(value);
}

/** Prints `data` as json/yaml, or as the table built from `rows`. */
export function render<T>(
  format: OutputFormat,
  data: unknown,
  rows: readonly T[],
  columns: readonly Column<T>[],
  empty = 'No resources found.',
): string {
  if (format === 'json' || format === 'yaml') return renderData(data, format);
  if (rows.length === 0) return `${empty}\n`;
  return renderTable(rows, columns, format === 'wide');
}

/** kubectl-style age: 45s, 12m, 3h, 5d. */
export function age(since: string | undefined, now: number = Date.now()): string {
  if (since === undefined) return '';
  const t = Date.parse(since);
  if (Number.isNaN(t)) return '';
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

function gpuSummary(gpus: Record<string, { allocatable: number; free: number }>): string {
  const entries = Object.entries(gpus);
  if (entries.length === 0) return '0/0';
  const free = entries.reduce((a, [, g]) => a + g.free, 0);
  const all = entries.reduce((a, [, g]) => a + g.allocatable, 0);
  return `${free}/${all}`;
}

function gpuDetail(gpus: Record<string, { allocatable: number; free: number }>): string {
  return Object.entries(gpus)
    .map(([r, g]) => `${r}=${g.free}/${g.allocatable}`)
    .join(',');
}

function counts(m: Record<string, number>): string {
  const entries = Object.entries(m).filter(([, n]) => n !== 0);
  if (entries.length === 0) return '0';
  if (entries.length === 1) return String(entries[0]![1]);
  return entries.map(([r, n]) => `${r}=${n}`).join(',');
}

export function clusterState(c: ClusterView): string {
  return c.policy.cordoned ? `${c.state},Cordoned` : c.state;
}

export const CLUSTER_COLUMNS: Column<ClusterView>[] = [
  { header: 'NAME', value: (c) => c.id },
  { header: 'ROLE', value: (c) => c.role },
  { header: 'STATE', value: clusterState },
  { header: 'GPUS(FREE/ALL)', value: (c) => gpuSummary(c.gpus) },
  { header: 'NODES', value: (c) => String(c.nodeCount) },
  { header: 'AGE', value: (c) => age(c.createdAt) },
  { header: 'AGENT', value: (c) => (c.connections.agent ? 'connected' : '-'), wide: true },
  {
    header: 'VIRTUAL-NODE',
    value: (c) =>
      c.role === 'donor' ? '-' : c.connections['virtual-node'] ? 'connected' : 'absent',
    wide: true,
  },
  { header: 'LAST-SEEN', value: (c) => age(c.lastSeenAt), wide: true },
  { header: 'MAX-GPUS', value: (c) => String(c.policy.maxGpus || 'unlimited'), wide: true },
  { header: 'GPUS', value: (c) => gpuDetail(c.gpus) || '-', wide: true },
];

export const CAPACITY_COLUMNS: Column<CapacitySummary['rows'][number]>[] = [
  { header: 'CLUSTER', value: (r) => r.cluster },
  { header: 'PRODUCT', value: (r) => r.gpuProduct || '-' },
  { header: 'RESOURCE', value: (r) => r.resource },
  { header: 'FREE', value: (r) => String(r.free) },
  { header: 'ALLOCATABLE', value: (r) => String(r.allocatable) },
  { header: 'LARGEST-FREE', value: (r) => String(r.largestFreeOnNode) },
  { header: 'NODES', value: (r) => String(r.nodes) },
  { header: 'MEMORY(MIB)', value: (r) => String(r.gpuMemoryMiB || '-'), wide: true },
];

export const PEERING_COLUMNS: Column<PeeringView>[] = [
  { header: 'ORIGIN', value: (p) => p.origin },
  { header: 'DONOR', value: (p) => p.donor },
  {
    header: 'STATE',
    value: (p) => (p.deletingSince !== undefined ? `${p.donorState},Draining` : p.donorState),
  },
  { header: 'LENDABLE', value: (p) => counts(p.lendable) },
  { header: 'IN-USE', value: (p) => counts(p.inUse) },
  { header: 'MAX-GPUS', value: (p) => String(p.maxGpus || 'unlimited') },
  { header: 'PRODUCTS', value: (p) => (p.gpuProducts.length ? p.gpuProducts.join(',') : 'all') },
  { header: 'AGE', value: (p) => age(p.createdAt) },
  { header: 'TENANT-NAMESPACE', value: (p) => p.tenantNamespace, wide: true },
  { header: 'POD-SECURITY', value: (p) => p.podSecurity, wide: true },
  { header: 'DONOR-PRODUCTS', value: (p) => p.donorGpuProducts.join(',') || '-', wide: true },
];

export const OFFLOAD_COLUMNS: Column<ReservationRecord>[] = [
  { header: 'POD', value: (r) => `${r.pod.namespace}/${r.pod.name}` },
  { header: 'ORIGIN', value: (r) => r.origin },
  { header: 'DONOR', value: (r) => r.donor },
  { header: 'NODE', value: (r) => r.node },
  { header: 'GPUS', value: (r) => String(r.gpus) },
  { header: 'STATE', value: (r) => r.state },
  { header: 'PHASE', value: (r) => r.remotePhase ?? '-' },
  { header: 'AGE', value: (r) => age(r.createdAt) },
  { header: 'RESOURCE', value: (r) => r.resource, wide: true },
  {
    header: 'REMOTE-POD',
    value: (r) => (r.remoteName ? `${r.remoteNamespace ?? ''}/${r.remoteName}` : '-'),
    wide: true,
  },
  { header: 'RESERVATION', value: (r) => r.id, wide: true },
  { header: 'REASON', value: (r) => r.reason ?? '-', wide: true },
];

type Verdict = PlacementResult['verdicts'][number];

export const VERDICT_COLUMNS: Column<Verdict & { chosen: boolean }>[] = [
  { header: 'DONOR', value: (v) => v.donor },
  { header: 'NODE', value: (v) => v.node || '-' },
  { header: 'SCORE', value: (v) => (v.reason ? '-' : v.score.toFixed(2)) },
  { header: 'VERDICT', value: (v) => (v.chosen ? 'chosen' : v.reason || 'fits, lower score') },
];

/** `spillctl simulate`: where the pod would go, then every candidate and why. */
export function renderSimulation(result: PlacementResult, format: OutputFormat): string {
  if (format === 'json' || format === 'yaml') return renderData(result, format);
  const chosen = result.placed ? result.reservation : undefined;
  const head = result.placed
    ? `would place on ${result.reservation.donor}, node ${result.reservation.node} (${result.reservation.gpus} ${result.reservation.resource})\n`
    : `no placement: ${result.reason} (${result.code})\n`;
  const rows = result.verdicts.map((v) => ({
    ...v,
    chosen: chosen !== undefined && v.donor === chosen.donor && v.node === chosen.node,
  }));
  if (rows.length === 0) return head;
  return `${head}\n${renderTable(rows, VERDICT_COLUMNS, format === 'wide')}`;
}

/** `spillctl describe cluster`: kubectl-describe-like sections. */
export function describeCluster(c: ClusterDetail, now: number = Date.now()): string {
  const lines: string[] = [];
  const kv = (k: string, v: string, indent = ''): void => {
    lines.push(`${indent}${`${k}:`.padEnd(22 - indent.length)}${v}`);
  };
  kv('Name', c.id);
  kv('Role', c.role);
  kv('State', clusterState(c));
  kv('Joined', `${c.createdAt} (${age(c.createdAt, now)} ago)`);
  if (c.lastSeenAt) kv('Last seen', `${c.lastSeenAt} (${age(c.lastSeenAt, now)} ago)`);
  if (c.certNotAfter) kv('Certificate expires', c.certNotAfter);
  lines.push('Connections:');
  const comps = Object.entries(c.connections);
  if (comps.length === 0) lines.push('  <none>');
  for (const [comp, conn] of comps) {
    kv(comp, `broker ${conn.brokerId}, since ${conn.connectedAt}`, '  ');
  }
  lines.push('Donor policy:');
  kv('Cordoned', String(c.policy.cordoned), '  ');
  kv('Max GPUs', String(c.policy.maxGpus || 'unlimited'), '  ');
  kv('Max GPUs per origin', String(c.policy.maxGpusPerOrigin || 'unlimited'), '  ');
  kv('Pod security', c.policy.podSecurity, '  ');
  kv('Cost per GPU-hour', String(c.policy.costPerGpuHour), '  ');
  const sel = Object.entries(c.policy.nodeSelector);
  kv('Node selector', sel.length ? sel.map(([k, v]) => `${k}=${v}`).join(',') : '<none>', '  ');
  lines.push('GPUs:');
  if (Object.keys(c.gpus).length === 0) lines.push('  <none>');
  for (const [r, g] of Object.entries(c.gpus)) kv(r, `${g.free} free of ${g.allocatable}`, '  ');
  lines.push(`Nodes (${c.nodes.length}):`);
  if (c.nodes.length > 0) {
    const table = renderTable(
      c.nodes,
      [
        { header: 'NAME', value: (n) => n.name },
        { header: 'PRODUCT', value: (n) => n.gpuProduct || '-' },
        { header: 'GPUS(FREE/ALL)', value: (n) => gpuSummary(n.gpus) },
        { header: 'READY', value: (n) => String(n.ready) },
        { header: 'ELIGIBLE', value: (n) => (n.eligible ? 'yes' : `no: ${n.reason ?? ''}`) },
      ],
      false,
    );
    lines.push(
      ...table
        .trimEnd()
        .split('\n')
        .map((l) => `  ${l}`),
    );
  }
  lines.push('Peerings:');
  if (c.peerings.length === 0) lines.push('  <none>');
  for (const p of c.peerings) {
    const limit = p.maxGpus ? `, max ${p.maxGpus} GPUs` : '';
    const products = p.gpuProducts.length ? `, products ${p.gpuProducts.join(',')}` : '';
    const draining = p.deletingSince ? ', draining' : '';
    lines.push(`  ${p.origin} -> ${p.donor}${limit}${products}${draining}`);
  }
  return `${lines.join('\n')}\n`;
}

/** get usage: one column per grouping key, then the sums. */
export function usageColumns(by: readonly UsageKey[]): Column<UsageRow>[] {
  return [
    ...by.map((k) => ({ header: k.toUpperCase(), value: (r: UsageRow) => r[k] ?? '' })),
    { header: 'GPU-HOURS', value: (r) => r.gpuHours.toFixed(3) },
    { header: 'GPU-SECONDS', value: (r) => String(Math.round(r.gpuSeconds)) },
    { header: 'PODS', value: (r) => String(r.pods) },
  ];
}
