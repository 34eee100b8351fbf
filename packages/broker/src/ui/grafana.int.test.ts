// The Grafana dashboard in the broker chart names only metrics this broker exports: the
// names come from a real broker's GET /metrics, not from a list kept by hand.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@spillway/common';
import { startBroker, type RunningBroker } from '../broker.js';
import { brokerConfig } from '../config.js';

const DASHBOARD = new URL(
  '../../../../charts/spillway-broker/dashboards/spillway-broker.json',
  import.meta.url,
);

interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

/** Every series name a scrape can hold: histograms expose _bucket, _sum and _count. */
export function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    names.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
  }
  return names;
}

/** Metric names in a PromQL expression: identifiers not followed by `(` and not keywords. */
export function metricsIn(expr: string): string[] {
  const stripped = expr
    .replace(/\{[^}]*\}/g, '{}') // label matchers and their values
    .replace(/\[[^\]]*\]/g, '[]') // range selectors
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const out: string[] = [];
  for (const m of stripped.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()/g)) {
    const word = m[1]!;
    if (
      /^(and|or|unless|bool|offset|le|inf|nan|by|without|on|ignoring|group_left|group_right)$/i.test(
        word,
      ) ||
      /^\d/.test(word)
    )
      continue;
    out.push(word);
  }
  return out;
}

function expressions(panels: Panel[]): { panel: string; expr: string }[] {
  return panels.flatMap((p) => [
    ...(p.targets ?? []).flatMap((t) => (t.expr ? [{ panel: p.title ?? '?', expr: t.expr }] : [])),
    ...expressions(p.panels ?? []),
  ]);
}

let dir: string;
let broker: RunningBroker;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'spillway-grafana-'));
  broker = await startBroker(
    brokerConfig({
      dataDir: dir,
      grpcHost: '127.0.0.1',
      grpcPort: 0,
      httpHost: '127.0.0.1',
      httpPort: 0,
      logLevel: 'silent',
      shutdownGrace: 500,
    }),
    silentLogger(),
  );
});

afterAll(async () => {
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('the broker chart Grafana dashboard', () => {
  it('queries only metrics the broker exports', async () => {
    const res = await fetch(`http://127.0.0.1:${broker.httpPort}/metrics`);
    expect(res.status).toBe(200);
    const exported = exportedNames(await res.text());
    expect(exported.has('spillway_placements_total')).toBe(true);

    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      panels: Panel[];
      templating: { list: { query?: unknown }[] };
    };
    const exprs = expressions(dashboard.panels);
    for (const v of dashboard.templating.list) {
      if (typeof v.query === 'object' && v.query !== null && 'query' in v.query) {
        const q = String(v.query.query);
        const m = /label_values\((\w+)/.exec(q);
        if (m) exprs.push({ panel: 'variable', expr: m[1]! });
      }
    }
    expect(exprs.length).toBeGreaterThan(20);
    const unknown = exprs.flatMap(({ panel, expr }) =>
      metricsIn(expr)
        .filter((name) => !exported.has(name))
        .map((name) => `${panel}: ${name}`),
    );
    expect(unknown).toEqual([]);
  });

  it('covers capacity, placements and latency, offloads by phase, streams, store and usage', () => {
    const text = readFileSync(DASHBOARD, 'utf8');
    for (const metric of [
      'spillway_free_gpus',
      'spillway_placements_total',
      'spillway_placement_duration_seconds_bucket',
      'spillway_offloads',
      'spillway_streams_open',
      'spillway_store_up',
      'spillway_offloaded_gpus',
      'spillway_gpu_seconds_total',
    ]) {
      expect(text).toContain(metric);
    }
  });

  it('reads names out of PromQL', () => {
    expect(
      metricsIn(
        'histogram_quantile(0.99, sum by (le) (rate(spillway_x_bucket{job=~"a|b"}[5m]))) / on (job) group_left max(up)',
      ),
    ).toEqual(['spillway_x_bucket', 'up']);
  });
});
