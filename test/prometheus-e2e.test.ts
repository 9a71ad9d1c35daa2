import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PolyvSimulator } from '../src/sim/polyv-simulator.js';
import { api, eventually, startBroker, startSim, testConfig, type TestBroker } from './support/harness.js';

/**
 * A real Prometheus (the Debian `prometheus` package) scrapes a real broker with the project's alert rules loaded:
 * the metrics arrive, every rule evaluates without error and none fires on a healthy broker, and every query of
 * the Grafana dashboards runs.
 */

const PROMETHEUS = '/usr/bin/prometheus';
const ROOT = join(import.meta.dirname, '..');
const SCRAPE_JOB = 'polyv-token-broker';

interface PromResponse<T> {
  status: 'success' | 'error';
  data: T;
  error?: string;
}
interface VectorSample {
  metric: Record<string, string>;
  value: [number, string];
}
interface RuleGroups {
  groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string; lastEvaluation: string }> }>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The `expr` of every target and annotation of every dashboard, with Grafana's variables filled in. */
function dashboardExprs(): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  const dir = join(ROOT, 'grafana/dashboards');
  const visit = (value: unknown, where: string): void => {
    if (Array.isArray(value)) value.forEach((v, i) => visit(v, `${where}[${i}]`));
    else if (typeof value === 'object' && value !== null) {
      for (const [k, v] of Object.entries(value)) {
        if (k === 'expr' && typeof v === 'string') out.push({ where, expr: v });
        else visit(v, `${where}.${k}`);
      }
    }
  };
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
    visit(JSON.parse(readFileSync(join(dir, file), 'utf8')), file);
  }
  const vars: Record<string, string> = { __rate_interval: '1m', __range: '5m', __interval: '15s', instance: '.*' };
  return out.map((q) => ({ ...q, expr: q.expr.replace(/\$(\w+)/g, (m, name: string) => vars[name] ?? m) }));
}

describe.skipIf(!existsSync(PROMETHEUS))('Prometheus scraping a real broker', () => {
  let sim: PolyvSimulator | undefined;
  let broker: TestBroker | undefined;
  let prometheus: ChildProcess | undefined;
  let prometheusLog = '';
  let dir: string | undefined;
  let promUrl = '';

  async function query<T>(path: string): Promise<T> {
    const res = await fetch(`${promUrl}${path}`);
    const body = (await res.json()) as PromResponse<T>;
    if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? res.status}`);
    return body.data;
  }

  beforeAll(async () => {
    sim = await startSim();
    broker = await startBroker(testConfig(sim.url));
    dir = mkdtempSync(join(tmpdir(), 'ptb-prometheus-'));
    const target = new URL(broker.url).host;
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 1s',
        '  evaluation_interval: 1s',
        'rule_files:',
        `  - ${JSON.stringify(join(ROOT, 'prometheus/alerts.yml'))}`,
        'scrape_configs:',
        `  - job_name: ${SCRAPE_JOB}`,
        '    static_configs:',
        `      - targets: [${JSON.stringify(target)}]`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prometheus = spawn(
      PROMETHEUS,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const collect = (chunk: Buffer) => {
      prometheusLog = `${prometheusLog}${chunk.toString('utf8')}`.slice(-8000);
    };
    prometheus.stdout?.on('data', collect);
    prometheus.stderr?.on('data', collect);
  });

  afterAll(async () => {
    const p = prometheus;
    if (p !== undefined && p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((resolve) => p.once('exit', resolve));
      p.kill('SIGTERM');
      const force = setTimeout(() => p.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(force);
    }
    await broker?.stop();
    await sim?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('when the broker has served a token, then Prometheus sees the counter, the alert rules evaluate and none fires', async () => {
    const res = await api(broker!.url, '/v1/channels/1000001/token');
    expect(res.status).toBe(200);

    const served = await eventually(
      async () => {
        if (prometheus?.exitCode !== null) throw new Error(`prometheus exited (${String(prometheus?.exitCode)}):\n${prometheusLog}`);
        try {
          const samples = await query<{ result: VectorSample[] }>('/api/v1/query?query=polyv_broker_tokens_served_total');
          const total = samples.result.reduce((n, s) => n + Number(s.value[1]), 0);
          return total >= 1 ? samples.result : undefined;
        } catch {
          return undefined; // not listening yet
        }
      },
      20_000,
      200,
    );
    expect(served[0]?.metric).toMatchObject({ job: SCRAPE_JOB, kind: 'channel' });
    const seenAt = Date.now();

    // Every rule evaluated against real data since the counter arrived: healthy, and no alert pending or firing.
    const rules = await eventually(
      async () => {
        const data = await query<RuleGroups>('/api/v1/rules');
        const all = data.groups.flatMap((g) => g.rules);
        return all.length > 0 && all.every((r) => Date.parse(r.lastEvaluation) > seenAt) ? all : undefined;
      },
      10_000,
      200,
    );
    expect(rules.map((r) => r.name)).toContain('PolyvBrokerRedisDown');
    expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([]);
    const alerts = await query<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>('/api/v1/alerts');
    expect(alerts.alerts.map((a) => `${a.labels['alertname']} ${a.state}`)).toEqual([]);

    const up = await query<{ result: VectorSample[] }>('/api/v1/query?query=max(polyv_broker_redis_up)');
    expect(up.result[0]?.value[1]).toBe('1');
  });

  it('when Grafana runs the dashboard queries, then Prometheus accepts and evaluates every one', async () => {
    const exprs = dashboardExprs();
    expect(exprs.length).toBeGreaterThan(0);
    const failures: string[] = [];
    for (const { where, expr } of exprs) {
      const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await res.json()) as PromResponse<unknown>;
      if (body.status !== 'success') failures.push(`${where}: ${expr}\n  ${body.error ?? res.status}`);
    }
    expect(failures).toEqual([]);
  });
});
