import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import express from 'express';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { ERROR_STATUS } from '../src/errors/broker-error.js';
import { createHttpServer } from '../src/http/create-http-server.js';
import { opsRoutes } from '../src/http/routes/ops-routes.js';
import { ManualClock } from '../src/lib/clock.js';
import { createLogger } from '../src/lib/logger.js';
import type { PolyvSimulator, SimAccount } from '../src/sim/polyv-simulator.js';
import { hostileRequests, rawRequestBytes, type FuzzRequest, type FuzzSetup } from './support/hostile-requests.js';
import { LogCapture, OTHER_KEY, TEST_ACCOUNT, TEST_KEY, api, startBroker, startSim, testConfig, type TestBroker, type ErrorBody, configProblems } from './support/harness.js';
import { rawRequest, slowloris, type RawAnswer } from './support/raw-http.js';

/**
 * Hostile input: property-based fuzzing of every route, header and body (fast-check), header and body size
 * limits, slow clients (headers and request timeouts), per-consumer rate limits, and 401 versus 403.
 * Reproduce a fuzz failure with FUZZ_SEED=<seed printed by fast-check>; FUZZ_RUNS raises the number of runs.
 */

const PARTNER: SimAccount = {
  appId: 'partnerfuzz1',
  appSecret: 'partner-fuzz-secret-0123456789abcdef',
  channels: ['1000001', '3000001'],
};
const SCOPED_KEY = 'scoped-consumer-key-0123456789';
const GOLD_KEY = 'gold-consumer-key-0123456789';
const TIGHT_KEY = 'tight-consumer-key-0123456789';
const SCOPED_CHANNEL = '1000002';

const FUZZ_RUNS = Number(process.env['FUZZ_RUNS'] ?? 600);
const RAW_RUNS = Math.max(20, Math.floor(FUZZ_RUNS / 5));
const FUZZ_SEED = process.env['FUZZ_SEED'] === undefined ? undefined : Number(process.env['FUZZ_SEED']);


let sim: PolyvSimulator;
let dir: string;
const brokers: TestBroker[] = [];
const agent = new Agent({ connections: 8, keepAliveTimeout: 2000 });

beforeAll(async () => {
  sim = await startSim({ accounts: [TEST_ACCOUNT, PARTNER] });
  dir = mkdtempSync(join(tmpdir(), 'ptb-hostile-'));
});
afterAll(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
  await agent.close();
  await sim.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A config file with the partner account and the scoped, exempt and tight consumers. */
function configFile(): string {
  const path = join(dir, `broker-${brokers.length}.yaml`);
  writeFileSync(
    path,
    `
accounts:
  - name: partner
    appId: ${PARTNER.appId}
    appSecretEnv: PARTNER_SECRET
consumers:
  - name: scoped
    key: "${SCOPED_KEY}"
    channels: ["${SCOPED_CHANNEL}"]
    kinds: [channel]
  - name: gold
    key: "${GOLD_KEY}"
    rateLimit: { perSecond: 0 }
  - name: tight
    key: "${TIGHT_KEY}"
    rateLimit: { perSecond: 1, burst: 2 }
`,
  );
  return path;
}

async function broker(env: Record<string, string> = {}, options: { clock?: ManualClock; logs?: LogCapture } = {}): Promise<TestBroker> {
  const config = testConfig(sim.url, { BROKER_ROLE: 'api', BROKER_CONFIG_FILE: configFile(), PARTNER_SECRET: PARTNER.appSecret, ...env });
  const b = await startBroker(config, {
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.logs === undefined ? {} : { logger: options.logs.logger }),
  });
  brokers.push(b);
  return b;
}

const portOf = (url: string): number => Number(new URL(url).port);

interface Answer {
  status: number;
  headers: Record<string, string>;
  text: string;
}

async function send(baseUrl: string, req: Pick<FuzzRequest, 'method' | 'path' | 'headers' | 'body'>): Promise<Answer> {
  const res = await request(`${baseUrl}${req.path}`, {
    method: req.method as 'GET',
    headers: req.headers,
    ...(req.body === undefined ? {} : { body: req.body }),
    dispatcher: agent,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  const text = await res.body.text();
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  return { status: res.statusCode, headers, text };
}

/** Asserts the error body shape: exactly `{"error":{"code","message"}}`, with a code whose status is this one. */
function expectErrorBody(status: number, contentType: string | undefined, text: string, where: string): ErrorBody {
  expect(contentType, `${where}: content type`).toMatch(/^application\/json/);
  const body = JSON.parse(text) as ErrorBody;
  expect(Object.keys(body), where).toEqual(['error']);
  expect(Object.keys(body.error).sort(), where).toEqual(['code', 'message']);
  expect(typeof body.error.code, where).toBe('string');
  expect(typeof body.error.message, where).toBe('string');
  expect(ERROR_STATUS[body.error.code as keyof typeof ERROR_STATUS], `${where}: status of code ${body.error.code}`).toBe(status);
  return body;
}

/** The statuses a server may answer at all: no 5xx but 503 with a Retry-After in seconds. */
function expectNoServerError(status: number, retryAfter: string | undefined, where: string): void {
  if (status >= 500) {
    expect(status, `${where}: a 5xx other than 503`).toBe(503);
    expect(retryAfter, `${where}: 503 without Retry-After`).toMatch(/^[1-9]\d*$/);
  }
}

describe('fuzzing every route, header and body (fast-check)', () => {
  let b: TestBroker;
  const logs = new LogCapture('warn');
  /** Every token the broker handed out during the run: none may appear in an error body or a log line. */
  const served = new Set<string>();
  const secrets = (): string[] => [TEST_KEY, OTHER_KEY, SCOPED_KEY, GOLD_KEY, TIGHT_KEY, TEST_ACCOUNT.appSecret, PARTNER.appSecret, ...served];
  const setup: FuzzSetup = {
    fullKey: TEST_KEY,
    scopedKey: SCOPED_KEY,
    scopedChannel: SCOPED_CHANNEL,
    knownChannels: ['1000001', '1000002', '1000003', '2000001'],
    namedAccount: 'partner',
  };

  beforeAll(async () => {
    b = await broker({}, { logs });
    sim.resetCalls();
  });

  it('when random requests hit every route, then each gets its promised status and JSON error, bad input never reaches PolyV and nothing leaks', async () => {
    const tally = new Map<string, number>();
    const started = performance.now();
    await fc.assert(
      fc.asyncProperty(hostileRequests(setup), async (req) => {
        const callsBefore = sim.calls().length;
        const res = await send(b.url, req);
        const callsAfter = sim.calls().length;
        const where = `${req.label} → ${res.status} ${res.text.slice(0, 200)}`;
        tally.set(`${req.expected.kind} ${res.status}`, (tally.get(`${req.expected.kind} ${res.status}`) ?? 0) + 1);

        expectNoServerError(res.status, res.headers['retry-after'], where);
        // /readyz answers 503 with its documented `{"status", "checks"}` body; every other error is the JSON error.
        const notReady = req.path.startsWith('/readyz') && res.status === 503;
        let body: ErrorBody | undefined;
        if (res.status >= 400 && req.method !== 'HEAD' && !notReady) body = expectErrorBody(res.status, res.headers['content-type'], res.text, where);
        if (res.status < 300 && res.text.startsWith('{')) {
          const ok = JSON.parse(res.text) as Record<string, unknown>;
          for (const field of ['channelToken', 'token', 'mediaChannelKey', 'url']) {
            if (typeof ok[field] === 'string') served.add(ok[field]);
          }
        } else {
          for (const secret of secrets()) expect(res.text.includes(secret), `${where}: leaks a secret`).toBe(false);
        }

        const expected = req.expected;
        if (expected.kind === 'error') {
          expect(res.status, where).toBe(expected.status);
          if (req.method !== 'HEAD') expect(body?.error.code, where).toBe(expected.code);
          expect(callsAfter, `${where}: bad input called PolyV`).toBe(callsBefore);
          if (expected.status === 401) expect(res.headers['www-authenticate'], where).toMatch(/^Bearer /);
        } else if (expected.kind === 'served') {
          const ok = res.status === 200 || res.status === 204 || res.status === 503;
          const rejected = res.status === 404 && (req.method === 'HEAD' || body?.error.code === 'channel_not_in_account');
          expect(ok || rejected, where).toBe(true);
        } else if (expected.kind === 'ops') {
          expect(res.status, where).toBe(200);
        }
      }),
      { numRuns: FUZZ_RUNS, ...(FUZZ_SEED === undefined ? {} : { seed: FUZZ_SEED }) },
    );
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.info(`hostile-input fuzz: ${FUZZ_RUNS} requests in ${seconds} s, PolyV calls ${sim.calls().length}; by expectation and status: ${JSON.stringify(Object.fromEntries([...tally].sort()))}`);
  });

  it('when raw bytes that are almost HTTP arrive, then the broker answers 4xx JSON or closes the connection, never 5xx', async () => {
    const port = portOf(b.url);
    const started = performance.now();
    const statuses = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(rawRequestBytes(port, TEST_KEY), async (bytes) => {
        const res: RawAnswer = await rawRequest(port, bytes);
        const where = `${JSON.stringify(bytes.toString('latin1').slice(0, 300))} → ${JSON.stringify(res.raw.slice(0, 300))}`;
        statuses.set(String(res.status ?? (res.closed ? 'closed' : 'open')), (statuses.get(String(res.status ?? (res.closed ? 'closed' : 'open'))) ?? 0) + 1);
        expect(res.status !== undefined || res.closed, `${where}: neither answered nor closed`).toBe(true);
        if (res.status === undefined) return;
        expectNoServerError(res.status, res.headers['retry-after'], where);
        if (res.status >= 400 && res.body !== '' && !res.body.startsWith('{"status"')) {
          expectErrorBody(res.status, res.headers['content-type'], res.body, where);
        }
        for (const secret of secrets()) {
          if (res.status >= 400) expect(res.body.includes(secret), `${where}: leaks a secret`).toBe(false);
        }
      }),
      { numRuns: RAW_RUNS, ...(FUZZ_SEED === undefined ? {} : { seed: FUZZ_SEED }) },
    );
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.info(`hostile-input raw fuzz: ${RAW_RUNS} connections in ${seconds} s; answers: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
  });

  it('when the fuzzing is over, then the process is healthy: /healthz, /readyz, tokens served, no error logged, no secret in the logs', async () => {
    expect((await api(b.url, '/healthz', { key: null })).status).toBe(200);
    expect((await api(b.url, '/readyz', { key: null })).status).toBe(200);
    const token = await api<{ channelToken: string }>(b.url, '/v1/channels/1000001/token');
    expect(token.status).toBe(200);
    expect(sim.checkToken('channel', '1000001', token.body.channelToken)).toEqual({ valid: true });
    const errors = logs.lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);
    expect(errors, 'lines logged at error level').toEqual([]);
    for (const secret of secrets()) expect(logs.text.includes(secret), 'a secret in the logs').toBe(false);
  });
});

describe('/readyz when not ready', () => {
  it('when a dependency is down, then /readyz answers 503 with Retry-After, like every 503', async () => {
    const app = express();
    app.use(opsRoutes({ readiness: { check: async () => ({ redis: 'unreachable: timeout' }) }, registry: new Registry() }));
    const server = createHttpServer(app, { headersTimeoutMs: 1000, requestTimeoutMs: 1000 }, createLogger('silent'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const res = await api(`http://127.0.0.1:${(server.address() as { port: number }).port}`, '/readyz', { key: null });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
      expect(res.body).toEqual({ status: 'not_ready', checks: { redis: 'unreachable: timeout' } });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('401 and 403 are distinct', () => {
  it('when the key is missing or unknown, then 401; when it is known but the request is outside its scope, then 403 naming the consumer', async () => {
    const b = await broker();
    sim.resetCalls();
    const missing = await api<ErrorBody>(b.url, '/v1/channels/1000002/token', { key: null });
    const unknown = await api<ErrorBody>(b.url, '/v1/channels/1000002/token', { key: 'no-such-consumer-key-0123456789' });
    const outside = await api<ErrorBody>(b.url, '/v1/channels/1000003/token', { key: SCOPED_KEY });
    const wrongKind = await api<ErrorBody>(b.url, `/v1/channels/${SCOPED_CHANNEL}/common-token`, { key: SCOPED_KEY });
    expect([missing.status, unknown.status, outside.status, wrongKind.status]).toEqual([401, 401, 403, 403]);
    expect([missing.body.error.code, unknown.body.error.code]).toEqual(['unauthorized', 'unauthorized']);
    expect(outside.body.error).toEqual({ code: 'forbidden', message: 'consumer scoped may not read channel tokens of channel 1000003 in account default' });
    expect(JSON.stringify(outside.body)).not.toContain(SCOPED_KEY);
    expect(sim.calls({ channelId: '1000003' })).toEqual([]);
  });
});

describe('header and body size limits', () => {
  let b: TestBroker;
  beforeAll(async () => {
    b = await broker();
  });

  it('when the request line and headers stay under 16 KiB, then they are served; over it, then 431 headers_too_large and the connection closes', async () => {
    const port = portOf(b.url);
    const head = (extra: string) => `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;
    const under = await rawRequest(port, head(`X-Fill: ${'a'.repeat(15 * 1024)}\r\n`));
    expect(under.status).toBe(200);

    for (const [what, bytes] of [
      ['one 17 KiB header', head(`X-Fill: ${'a'.repeat(17 * 1024)}\r\n`)],
      ['200 headers of 100 bytes', head(Array.from({ length: 200 }, (_, i) => `X-H${i}: ${'b'.repeat(92)}\r\n`).join(''))],
      ['a 20 KiB URL', `GET /healthz?${'q'.repeat(20 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`],
      ['a 1 MiB header', head(`Authorization: Bearer ${'k'.repeat(1024 * 1024)}\r\n`)],
    ] as const) {
      const res = await rawRequest(port, bytes);
      expect(res.status, what).toBe(431);
      expect(expectErrorBody(431, res.headers['content-type'], res.body, what).error.code).toBe('headers_too_large');
      expect(res.headers['connection'], what).toBe('close');
      expect(res.closed, what).toBe(true);
    }
    expect((await api(b.url, '/healthz', { key: null })).status).toBe(200);
  });

  it('when a body is 16 KiB it is read; one byte more, chunked, of any type or inflating past it, then 413 before PolyV is asked', async () => {
    sim.resetCalls();
    const refresh = '/v1/channels/1000001/token/refresh';
    const exactly = (size: number) => JSON.stringify({ rejectedToken: 'x'.repeat(size - '{"rejectedToken":""}'.length) });
    expect(Buffer.byteLength(exactly(16 * 1024))).toBe(16 * 1024);
    const read = await api<ErrorBody>(b.url, refresh, { method: 'POST', rawBody: exactly(16 * 1024) });
    expect([read.status, read.body.error.code]).toEqual([400, 'invalid_request']); // read, parsed, then refused: too long a token

    const headers = { authorization: `Bearer ${TEST_KEY}` };
    const cases: Array<[string, () => Promise<Answer>]> = [
      ['16 KiB + 1', () => send(b.url, { method: 'POST', path: refresh, headers: { ...headers, 'content-type': 'application/json' }, body: Buffer.from(exactly(16 * 1024 + 1)) })],
      ['text/plain', () => send(b.url, { method: 'POST', path: refresh, headers: { ...headers, 'content-type': 'text/plain' }, body: Buffer.alloc(100_000, 0x61) })],
      [
        'chunked, no Content-Length',
        async () => {
          const res = await request(`${b.url}${refresh}`, {
            method: 'POST',
            headers: { ...headers, 'content-type': 'application/json' },
            body: Readable.from([Buffer.from('{"rejectedToken":"'), Buffer.alloc(40_000, 0x61), Buffer.from('"}')]),
            dispatcher: agent,
          });
          return { status: res.statusCode, headers: { 'content-type': String(res.headers['content-type']) }, text: await res.body.text() };
        },
      ],
      [
        'gzip of 5 MB',
        async () => {
          const { gzipSync } = await import('node:zlib');
          const bomb = gzipSync(Buffer.from(`{"rejectedToken":"${'a'.repeat(5_000_000)}"}`));
          expect(bomb.length).toBeLessThan(16 * 1024);
          return send(b.url, { method: 'POST', path: refresh, headers: { ...headers, 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: bomb });
        },
      ],
    ];
    for (const [what, call] of cases) {
      const res = await call();
      expect(res.status, what).toBe(413);
      expect(expectErrorBody(413, res.headers['content-type'], res.text, what).error.code).toBe('payload_too_large');
    }
    expect(sim.calls()).toEqual([]);
  });
});

describe('slow clients', () => {
  const HEADERS_TIMEOUT_MS = 300;
  const REQUEST_TIMEOUT_MS = 800;
  let b: TestBroker;
  beforeAll(async () => {
    b = await broker({
      BROKER_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      BROKER_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      BROKER_ADMIN_PORT: '0',
    });
    expect((await api(b.url, '/v1/channels/1000001/token')).status).toBe(200); // warm
  });

  it('when slowloris clients send headers a byte at a time past BROKER_HEADERS_TIMEOUT_MS, then each gets 408 and is closed while other clients are served', async () => {
    const port = portOf(b.url);
    const adminPort = portOf(b.app.adminUrl ?? '');
    const head = 'GET /v1/channels/1000001/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ';
    const adminHead = 'GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ';
    const attackers = [
      ...Array.from({ length: 20 }, () => ({ head, ...slowloris(port, { head, drip: 'abcdefgh', everyMs: 25, giveUpMs: 5000 }) })),
      { head: adminHead, ...slowloris(adminPort, { head: adminHead, drip: 'abc', everyMs: 25, giveUpMs: 5000 }) },
    ];
    const others: Array<{ status: number; ms: number }> = [];
    let attacking = true;
    const all = Promise.all(attackers.map((a) => a.done)).then((r) => {
      attacking = false;
      return r;
    });
    while (attacking) {
      const t = performance.now();
      const res = await api(b.url, '/v1/channels/1000001/token');
      others.push({ status: res.status, ms: performance.now() - t });
      await new Promise((r) => setTimeout(r, 20));
    }
    const answers = await all;
    for (const [i, a] of answers.entries()) {
      const where = `attacker ${i}: ${JSON.stringify(a.raw)} after ${a.elapsedMs.toFixed(0)} ms`;
      expect(a.closed, where).toBe(true);
      expect(a.status, where).toBe(408);
      expect(expectErrorBody(408, a.headers['content-type'], a.body, where).error.code).toBe('request_timeout');
      expect(a.elapsedMs, where).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 20);
      expect(a.elapsedMs, where).toBeLessThan(HEADERS_TIMEOUT_MS + 1000);
      expect(attackers[i]!.bytesSent(), `${where}: it kept sending`).toBeGreaterThan(Buffer.byteLength(attackers[i]!.head) + 5);
    }
    expect(others.length).toBeGreaterThan(3);
    expect(others.every((o) => o.status === 200)).toBe(true);
    expect(Math.max(...others.map((o) => o.ms))).toBeLessThan(250);
    console.info(
      `slowloris: ${attackers.length} attackers closed after ${Math.min(...answers.map((a) => a.elapsedMs)).toFixed(0)}-${Math.max(...answers.map((a) => a.elapsedMs)).toFixed(0)} ms ` +
        `(headers timeout ${HEADERS_TIMEOUT_MS} ms); ${others.length} other requests all 200, slowest ${Math.max(...others.map((o) => o.ms)).toFixed(1)} ms`,
    );
  });

  it('when a client sends its body a byte at a time past BROKER_REQUEST_TIMEOUT_MS, then it gets 408 and is closed, and PolyV is not asked', async () => {
    sim.resetCalls();
    const slowBody = slowloris(portOf(b.url), {
      head:
        'POST /v1/channels/1000004/token/refresh HTTP/1.1\r\nHost: x\r\n' +
        `Authorization: Bearer ${TEST_KEY}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"rejectedToken":"`,
      drip: 'a',
      everyMs: 25,
      giveUpMs: 5000,
    });
    const a = await slowBody.done;
    expect(a.closed).toBe(true);
    expect(a.status).toBe(408);
    expect(expectErrorBody(408, a.headers['content-type'], a.body, 'slow body').error.code).toBe('request_timeout');
    expect(a.elapsedMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 20);
    expect(a.elapsedMs).toBeLessThan(REQUEST_TIMEOUT_MS + 1000);
    expect(sim.calls()).toEqual([]);
    expect((await api(b.url, '/healthz', { key: null })).status).toBe(200);
  });
});

describe('per-consumer rate limits', () => {
  const clock = new ManualClock(Date.now());
  let b: TestBroker;
  beforeAll(async () => {
    b = await broker({ BROKER_RATE_LIMIT_PER_SECOND: '5', BROKER_RATE_LIMIT_BURST: '5' }, { clock });
  });
  afterEach(() => sim.resetCalls());

  it('when one key sends more than its burst, then it gets 429 rate_limited with Retry-After while another key is still served, and no 429 calls PolyV', async () => {
    expect((await api(b.url, '/v1/channels/1000001/token', { key: OTHER_KEY })).status).toBe(200); // warm, in memory: the fast route
    sim.resetCalls();
    const hammer = await Promise.all(Array.from({ length: 12 }, () => api<ErrorBody>(b.url, '/v1/channels/1000001/token')));
    expect(hammer.filter((r) => r.status === 200)).toHaveLength(5);
    const limited = hammer.filter((r) => r.status === 429);
    expect(limited).toHaveLength(7);
    for (const r of limited) {
      expect(r.body.error.code).toBe('rate_limited');
      expect(r.body.error.message).toContain('consumer svc-a');
      expect(JSON.stringify(r.body)).not.toContain(TEST_KEY);
      expect(r.headers.get('retry-after')).toBe('1');
    }
    // Every other path of svc-a is limited too, before any other work: no PolyV call, not even for a cold channel.
    for (const [path, init] of [
      ['/v1/channels/1000003/token', {}],
      ['/v1/channels/1000003/token?disposable=true', {}],
      ['/v1/channels/1000001/token/refresh', { method: 'POST', body: { rejectedToken: 'x' } }],
      ['/v1/channels/1000003/watch-tokens', { method: 'POST', body: { viewerId: 'v1' } }],
      ['/v1/accounts/partner/channels/3000001/token', {}],
      ['/v1/channels/not-a-channel/token', {}],
    ] as const) {
      const r = await api<ErrorBody>(b.url, path, init);
      expect([r.status, r.body.error.code], path).toEqual([429, 'rate_limited']);
    }
    expect(sim.calls()).toEqual([]);

    // The other consumers are untouched; an unknown key is still 401, not 429.
    expect((await api(b.url, '/v1/channels/1000001/token', { key: OTHER_KEY })).status).toBe(200);
    expect((await api(b.url, '/v1/channels/1000001/token', { key: 'no-such-consumer-key-0123456789' })).status).toBe(401);

    // Time refills the bucket at 5 per second.
    clock.advance(200);
    expect((await api(b.url, '/v1/channels/1000001/token')).status).toBe(200);
    expect((await api(b.url, '/v1/channels/1000001/token')).status).toBe(429);
    clock.advance(1000);
    const refilled = await Promise.all(Array.from({ length: 6 }, () => api(b.url, '/v1/channels/1000001/token')));
    expect(refilled.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 429]);

    const metrics = await api<string>(b.url, '/metrics', { key: null });
    expect(metrics.body).toMatch(/^polyv_broker_rate_limited_total\{consumer="svc-a"\} (\d+)$/m);
    expect(Number(/^polyv_broker_rate_limited_total\{consumer="svc-a"\} (\d+)$/m.exec(metrics.body)?.[1])).toBeGreaterThanOrEqual(15);
    expect(metrics.body).not.toMatch(/rate_limited_total\{consumer="svc-b"\}/);
  });

  it('when a request tries the fast route and falls back to express (a cache miss), then it is charged once', async () => {
    // tight: 1 per second, burst 2 (its own limit in BROKER_CONFIG_FILE)
    expect((await api(b.url, '/v1/channels/1000004/token', { key: TIGHT_KEY })).status).toBe(200);
    expect((await api(b.url, '/v1/channels/1000005/token', { key: TIGHT_KEY })).status).toBe(200);
    const third = await api<ErrorBody>(b.url, '/v1/channels/1000001/token', { key: TIGHT_KEY });
    expect([third.status, third.body.error.code]).toEqual([429, 'rate_limited']);
    expect(sim.calls().map((c) => c.channelId).sort()).toEqual(['1000004', '1000005']);
  });

  it('when a consumer has rateLimit perSecond 0 in the config file, then it is never limited', async () => {
    const results = await Promise.all(Array.from({ length: 30 }, () => api(b.url, '/v1/channels/1000001/token', { key: GOLD_KEY })));
    expect(results.every((r) => r.status === 200)).toBe(true);
  });

  it('when no limit is configured, then nobody is limited', async () => {
    const unlimited = await broker();
    const results = await Promise.all(Array.from({ length: 40 }, () => api(unlimited.url, '/v1/channels/1000001/token')));
    expect(results.every((r) => r.status === 200)).toBe(true);
  });
});

describe('configuration of the limits', () => {
  const base = {
    REDIS_URL: 'redis://127.0.0.1:6379',
    POLYV_APP_ID: 'app',
    POLYV_APP_SECRET: 'secret',
    BROKER_API_KEYS: `svc-a:${TEST_KEY}`,
  };
  const problems = (env: Record<string, string>): string[] => configProblems({ ...base, ...env });

  it('when nothing is set, then headers 10 s, request 30 s and no rate limit; a burst defaults to the rate', () => {
    const c = loadConfig(base);
    expect([c.http.headersTimeoutMs, c.http.requestTimeoutMs]).toEqual([10_000, 30_000]);
    expect(c.rateLimit).toEqual({ perSecond: 0, burst: 1 });
    expect(loadConfig({ ...base, BROKER_RATE_LIMIT_PER_SECOND: '50' }).rateLimit).toEqual({ perSecond: 50, burst: 50 });
    expect(loadConfig({ ...base, BROKER_RATE_LIMIT_PER_SECOND: '50', BROKER_RATE_LIMIT_BURST: '200' }).rateLimit).toEqual({ perSecond: 50, burst: 200 });
  });

  it('when a value breaks its rule, then start-up names the variable and the rule', () => {
    expect(problems({ BROKER_HEADERS_TIMEOUT_MS: '40000' })).toEqual([
      'BROKER_HEADERS_TIMEOUT_MS must be at most BROKER_REQUEST_TIMEOUT_MS (30000), got 40000',
    ]);
    expect(problems({ BROKER_HEADERS_TIMEOUT_MS: '50', BROKER_REQUEST_TIMEOUT_MS: 'soon' })).toEqual([
      'BROKER_HEADERS_TIMEOUT_MS must be at least 100',
      'BROKER_REQUEST_TIMEOUT_MS must be a whole number',
    ]);
    expect(problems({ BROKER_RATE_LIMIT_BURST: '10' })).toEqual([
      'BROKER_RATE_LIMIT_BURST needs BROKER_RATE_LIMIT_PER_SECOND (at least 1): without it there is no limit',
    ]);
    expect(problems({ BROKER_RATE_LIMIT_PER_SECOND: '-1', BROKER_RATE_LIMIT_BURST: '0' })).toEqual([
      'BROKER_RATE_LIMIT_PER_SECOND must be at least 0',
      'BROKER_RATE_LIMIT_BURST must be at least 1',
    ]);
  });

  it('when a consumer of the config file has a bad rateLimit, then the problem names its path', () => {
    const path = join(dir, 'bad-rate.yaml');
    writeFileSync(path, `consumers:\n  - name: x\n    key: "${GOLD_KEY}"\n    rateLimit: { perSecond: -1, every: 3 }\n`);
    expect(problems({ BROKER_CONFIG_FILE: path })).toEqual([
      'BROKER_CONFIG_FILE consumers[0].rateLimit.perSecond: must be at least 0',
      'BROKER_CONFIG_FILE consumers[0].rateLimit: unknown field "every"',
    ]);
  });
});
