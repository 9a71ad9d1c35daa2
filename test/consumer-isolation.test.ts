import { request } from 'undici';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerError, BudgetExhaustedError } from '../src/errors/broker-error.js';
import { ManualClock } from '../src/lib/clock.js';
import { defaultRefreshReserve } from '../src/service/account-budgets.js';
import { CallBudget, slotLimit } from '../src/store/call-budget.js';
import { RedisKeys } from '../src/store/redis-keys.js';
import { signParams } from '../src/polyv/sign.js';
import {
  LogCapture,
  OTHER_KEY,
  TEST_ACCOUNT,
  api,
  redisUrl,
  testConfig,
  uniquePrefix,
  useSimulator,
  type ErrorBody,
  type TestBroker,
  type TokenBody,
} from './support/harness.js';

/**
 * Issue 9: whatever one consumer does, the other consumers of a channel keep being served. The harness turns
 * these policies off for the other tests; here each test sets them as it needs (their defaults included).
 */
const clock = new ManualClock(Date.now());
const fx = useSimulator({ clock });

/** The policies as a fresh deployment has them: every protection at its default. */
const DEFAULTS = { BROKER_REPORT_MIN_AGE_SECONDS: '', BROKER_REFRESH_RESERVE_PER_HOUR: '', BROKER_CONSUMER_UPSTREAM_PER_HOUR: '' };

function broker(env: Record<string, string>, logs?: LogCapture): Promise<TestBroker> {
  return fx.broker(testConfig(fx.sim.url, { BROKER_ROLE: 'api', ...DEFAULTS, ...env }), { clock, ...(logs === undefined ? {} : { logger: logs.logger }) });
}

const channelCalls = (channelId: string) => fx.sim.calls({ endpoint: 'get-channel-token', channelId });

let redis: Redis;
beforeAll(() => {
  redis = new Redis(redisUrl());
});
afterAll(async () => {
  await redis.quit();
});

describe('the refresh reserve: the last slots of a channel\'s hour are the proactive refresh\'s', () => {
  it('slotLimit at the edges: the whole budget for the refresh, budget minus reserve for everyone else, never below 0', () => {
    expect(slotLimit(450, 30, true)).toBe(450);
    expect(slotLimit(450, 30, false)).toBe(420);
    expect(slotLimit(5, 0, false)).toBe(5);
    expect(slotLimit(5, 4, false)).toBe(1);
    expect(slotLimit(5, 4, true)).toBe(5);
    expect(slotLimit(3, 5, false)).toBe(0);
    expect(defaultRefreshReserve(450)).toBe(30);
    expect(defaultRefreshReserve(500)).toBe(30);
    expect(defaultRefreshReserve(30)).toBe(2);
    expect(defaultRefreshReserve(14)).toBe(0);
  });

  it('when others have filled budget minus reserve, then they are refused while the refresh still gets exactly the reserve, atomically in Redis', async () => {
    const budget = new CallBudget({ redis, keys: new RedisKeys(uniquePrefix()), clock: new ManualClock(1_700_000_000_000), globalPer10s: 1500 });
    const take = (reserved: boolean) => budget.take('app', '7', 5, 'channel-token', { reserved, reservePerHour: 2 });
    // 10 racing non-reserved callers: exactly 3 slots.
    const racers = await Promise.allSettled(Array.from({ length: 10 }, () => take(false)));
    expect(racers.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    const refused = racers.find((r) => r.status === 'rejected')?.reason as BudgetExhaustedError;
    expect(refused).toBeInstanceOf(BudgetExhaustedError);
    expect(refused.message).toContain('the last 2 kept for the proactive refresh');
    // The refresh gets the two reserved slots, and no more.
    await expect(take(true)).resolves.toMatchObject({ used: 4 });
    await expect(take(true)).resolves.toMatchObject({ used: 5 });
    await expect(take(true)).rejects.toBeInstanceOf(BudgetExhaustedError);
    await expect(take(false)).rejects.toBeInstanceOf(BudgetExhaustedError);
  });

  it('when the refresh spent slots first, then the others stop earlier: they never reach into the reserve', async () => {
    const budget = new CallBudget({ redis, keys: new RedisKeys(uniquePrefix()), clock: new ManualClock(1_700_000_000_000), globalPer10s: 1500 });
    const take = (reserved: boolean) => budget.take('app', '8', 5, 'channel-token', { reserved, reservePerHour: 2 });
    for (let i = 0; i < 3; i++) await take(true);
    await expect(take(false)).rejects.toBeInstanceOf(BudgetExhaustedError);
    await expect(take(true)).resolves.toMatchObject({ used: 4 });
  });

  it('when consumers have spent all but the reserve of a channel through reports, then the scheduled refresh and on-call still fetch', async () => {
    clock.set(Date.now());
    const b = await broker({ BROKER_CHANNEL_BUDGET_PER_HOUR: '5', BROKER_REFRESH_RESERVE_PER_HOUR: '2', BROKER_REPORT_MIN_AGE_SECONDS: '0' });
    const account = b.app.accounts.defaultAccount;
    let token = (await api<TokenBody>(b.url, '/v1/channels/1000001/token')).body.channelToken;
    for (let i = 0; i < 2; i++) {
      const res = await api<TokenBody>(b.url, '/v1/channels/1000001/token/refresh', { method: 'POST', body: { rejectedToken: token } });
      expect(res.status).toBe(200);
      token = res.body.channelToken;
    }
    const spent = await api<ErrorBody>(b.url, '/v1/channels/1000001/token/refresh', { method: 'POST', body: { rejectedToken: token } });
    expect(spent.status).toBe(503);
    expect(spent.body.error.code).toBe('budget_exhausted');
    expect(channelCalls('1000001')).toHaveLength(3);
    // The reserve: the proactive refresh (as on-call forces it) still gets its slots.
    const forced = await b.app.service.forceRefresh(account, '1000001');
    expect(forced.token).not.toBe(token);
    expect(channelCalls('1000001')).toHaveLength(4);
  });
});

describe('per-consumer upstream quota', () => {
  it('when one consumer loops disposable tokens on two replicas, then it gets 429 upstream_quota_exceeded with Retry-After after its quota, never a PolyV call more; another consumer and cached reads are unaffected', async () => {
    clock.set(Date.now());
    const prefix = uniquePrefix();
    const env = { BROKER_CONSUMER_UPSTREAM_PER_HOUR: '3', BROKER_REDIS_PREFIX: prefix };
    const [a, b] = await Promise.all([broker(env), broker(env)]);
    const cached = await api<TokenBody>(a.url, '/v1/channels/1000002/token');
    expect(cached.status).toBe(200);
    const statuses: number[] = [];
    let refusal: Awaited<ReturnType<typeof api<ErrorBody>>> | undefined;
    for (let i = 0; i < 8; i++) {
      const res = await api<ErrorBody>((i % 2 === 0 ? a : b).url, '/v1/channels/1000002/token?disposable=true');
      statuses.push(res.status);
      if (res.status === 429) refusal = res;
    }
    // The cold read above was this consumer's first call: 2 disposable tokens more, then 429.
    expect(statuses).toEqual([200, 200, 429, 429, 429, 429, 429, 429]);
    expect(refusal?.body.error.code).toBe('upstream_quota_exceeded');
    expect(Number(refusal?.headers.get('retry-after'))).toBeGreaterThan(3000);
    expect(channelCalls('1000002')).toHaveLength(3);
    // Cached reads never count, on either replica.
    for (const r of [a, b, a, b]) expect((await api<TokenBody>(r.url, '/v1/channels/1000002/token')).body.channelToken).toBe(cached.body.channelToken);
    // Another consumer has a quota of its own.
    expect((await api(a.url, '/v1/channels/1000002/token?disposable=true', { key: OTHER_KEY })).status).toBe(200);
    expect(channelCalls('1000002')).toHaveLength(4);
  });

  it('when the quota is 0, then there is none', async () => {
    clock.set(Date.now());
    const b = await broker({ BROKER_CONSUMER_UPSTREAM_PER_HOUR: '0' });
    for (let i = 0; i < 70; i++) expect((await api(b.url, '/v1/channels/1000003/token?disposable=true')).status).toBe(200);
  });
});

describe('reports of a fresh token', () => {
  it('when the current token is reported before BROKER_REPORT_MIN_AGE_SECONDS (default 10), then it is answered without a PolyV call and counted as report_too_soon; after, it is replaced', async () => {
    clock.set(Date.now());
    const b = await broker({});
    const first = await api<TokenBody>(b.url, '/v1/channels/1000004/token');
    clock.advance(9_000);
    const tooSoon = await api<TokenBody>(b.url, '/v1/channels/1000004/token/refresh', { method: 'POST', body: { rejectedToken: first.body.channelToken } });
    expect(tooSoon.status).toBe(200);
    expect(tooSoon.body.channelToken).toBe(first.body.channelToken);
    expect(channelCalls('1000004')).toHaveLength(1);
    const metrics = await b.app.metrics.registry.getSingleMetricAsString('polyv_broker_requests_total');
    expect(metrics).toMatch(/polyv_broker_requests_total\{consumer="svc-a",kind="channel",outcome="report_too_soon"\} 1/);
    clock.advance(2_000);
    const replaced = await api<TokenBody>(b.url, '/v1/channels/1000004/token/refresh', { method: 'POST', body: { rejectedToken: first.body.channelToken } });
    expect(replaced.body.channelToken).not.toBe(first.body.channelToken);
    expect(channelCalls('1000004')).toHaveLength(2);
  });

  it('the same holds for the common token', async () => {
    clock.set(Date.now());
    const b = await broker({});
    const first = await api<{ token: string }>(b.url, '/v1/channels/1000005/common-token');
    const tooSoon = await api<{ token: string }>(b.url, '/v1/channels/1000005/common-token/refresh', { method: 'POST', body: { rejectedToken: first.body.token } });
    expect(tooSoon.body.token).toBe(first.body.token);
    expect(fx.sim.calls({ endpoint: 'common-get-token' })).toHaveLength(1);
    clock.advance(10_000);
    const replaced = await api<{ token: string }>(b.url, '/v1/channels/1000005/common-token/refresh', { method: 'POST', body: { rejectedToken: first.body.token } });
    expect(replaced.body.token).not.toBe(first.body.token);
    expect(fx.sim.calls({ endpoint: 'common-get-token' })).toHaveLength(2);
  });
});

describe('a fleet-wide pause after `qps exceeds`', () => {
  it('when PolyV says qps exceeds, then no replica calls PolyV for BROKER_UPSTREAM_PAUSE_SECONDS while cached tokens are served; then one probe, and calls resume', async () => {
    clock.set(Date.now());
    const prefix = uniquePrefix();
    const env = { BROKER_UPSTREAM_PAUSE_SECONDS: '60', BROKER_REDIS_PREFIX: prefix };
    const [a, b] = await Promise.all([broker(env), broker(env)]);
    const warm = await api<TokenBody>(a.url, '/v1/channels/1000001/token');
    fx.sim.resetCalls();
    fx.sim.setFault({ kind: 'error-code', code: 400, message: 'qps exceeds number of calls, limit: 1500', times: 1 });
    const first = await api<ErrorBody>(b.url, '/v1/channels/1000002/token');
    expect(first.body.error.code).toBe('upstream_rate_limited');
    const pause = await a.app.budget.readPause();
    expect(pause?.until).toBe(clock.now() + 60_000);

    // During the pause: every kind on every replica answers 503 with Retry-After, without a call; cached tokens are served.
    clock.advance(30_000);
    for (const r of [a, b]) {
      for (const [path, method] of [
        ['/v1/channels/1000003/token', 'GET'],
        ['/v1/channels/1000003/token?disposable=true', 'GET'],
        ['/v1/channels/1000003/common-token', 'GET'],
        ['/v1/channels/1000003/watch-urls', 'POST'],
      ] as const) {
        const res = await api<ErrorBody>(r.url, path, { method });
        expect(res.status).toBe(503);
        expect(res.body.error.code).toBe('upstream_rate_limited');
        expect(Number(res.headers.get('retry-after'))).toBe(30);
      }
      expect((await api<TokenBody>(r.url, '/v1/channels/1000001/token')).body.channelToken).toBe(warm.body.channelToken);
    }
    expect(fx.sim.calls()).toHaveLength(1);

    // After it: one probe goes through and ends the pause; then calls resume.
    clock.advance(31_000);
    expect((await api(a.url, '/v1/channels/1000003/token')).status).toBe(200);
    expect(await a.app.budget.readPause()).toBeNull();
    expect((await api(b.url, '/v1/channels/1000004/token')).status).toBe(200);
    expect(fx.sim.calls()).toHaveLength(3);
  });

  it('when the probe meets qps exceeds again, then the pause starts over and nothing else goes out', async () => {
    clock.set(Date.now());
    const b = await broker({ BROKER_UPSTREAM_PAUSE_SECONDS: '60' });
    fx.sim.setFault({ kind: 'error-code', code: 400, message: 'qps exceeds number of calls, limit: 1500', times: 2 });
    expect((await api<ErrorBody>(b.url, '/v1/channels/1000001/token')).body.error.code).toBe('upstream_rate_limited');
    clock.advance(61_000);
    const results = await Promise.all(['1000002', '1000003', '1000004'].map((ch) => api<ErrorBody>(b.url, `/v1/channels/${ch}/token`)));
    expect(results.map((r) => r.body.error.code)).toEqual(['upstream_rate_limited', 'upstream_rate_limited', 'upstream_rate_limited']);
    expect(fx.sim.calls()).toHaveLength(2);
    expect((await b.app.budget.readPause())?.until).toBe(clock.now() + 60_000);
  });
});

describe('attribution: who causes PolyV calls', () => {
  it('when consumers read, report and loop, then requests and the calls they caused are counted per consumer, and each non-hit request is one access log line without a key or token', async () => {
    clock.set(Date.now());
    const logs = new LogCapture('info');
    const b = await broker({ BROKER_REPORT_MIN_AGE_SECONDS: '0' }, logs);
    const first = await api<TokenBody>(b.url, '/v1/channels/1000001/token'); // svc-a: miss
    await api(b.url, '/v1/channels/1000001/token'); // svc-a: hit (not logged)
    await api(b.url, '/v1/channels/1000001/token/refresh', { method: 'POST', body: { rejectedToken: first.body.channelToken }, key: OTHER_KEY }); // svc-b: report
    await api(b.url, '/v1/channels/1000002/token?disposable=true', { key: OTHER_KEY }); // svc-b: disposable
    await api(b.url, '/v1/channels/abc/token'); // svc-a: 400
    const text = await b.app.metrics.registry.metrics();
    expect(text).toContain('polyv_broker_upstream_calls_caused_total{consumer="svc-a",reason="miss"} 1');
    expect(text).toContain('polyv_broker_upstream_calls_caused_total{consumer="svc-b",reason="report"} 1');
    expect(text).toContain('polyv_broker_upstream_calls_caused_total{consumer="svc-b",reason="disposable"} 1');
    expect(text).toContain('polyv_broker_requests_total{consumer="svc-a",kind="channel",outcome="hit"} 1');
    expect(text).toContain('polyv_broker_requests_total{consumer="svc-a",kind="channel",outcome="miss"} 1');
    expect(text).toContain('polyv_broker_requests_total{consumer="svc-b",kind="channel",outcome="refresh"} 1');
    const lines = logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['msg'] === 'request');
    expect(lines.map((l) => [l['consumer'], l['route'], l['channelId'], l['status'], l['outcome']])).toEqual([
      ['svc-a', 'GET /v1/channels/{channelId}/token', '1000001', 200, 'miss'],
      ['svc-b', 'POST /v1/channels/{channelId}/token/refresh', '1000001', 200, 'refresh'],
      ['svc-b', 'GET /v1/channels/{channelId}/token', '1000002', 200, 'disposable'],
      ['svc-a', 'GET /v1/channels/abc/token', undefined, 400, 'invalid_channel_id'],
    ]);
    for (const l of lines) expect(typeof l['durationMs']).toBe('number');
    expect(logs.text).not.toContain(first.body.channelToken);
    expect(logs.text).not.toContain(OTHER_KEY);
  });

  it('when BROKER_ACCESS_LOG_HIT_SAMPLE is 1, then cached hits (the fast path) are logged too', async () => {
    clock.set(Date.now());
    const logs = new LogCapture('info');
    const b = await broker({ BROKER_ACCESS_LOG_HIT_SAMPLE: '1' }, logs);
    await api(b.url, '/v1/channels/1000001/token');
    await api(b.url, '/v1/channels/1000001/token');
    const outcomes = logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['msg'] === 'request').map((l) => l['outcome']);
    expect(outcomes).toEqual(['miss', 'hit']);
  });
});

describe('form bodies to PolyV are UTF-8', () => {
  it('when a viewer nickname is not ASCII, then it is signed and sent as UTF-8 and PolyV (the simulator) accepts it', async () => {
    clock.set(Date.now());
    const b = await broker({});
    const res = await api(b.url, '/v1/channels/1000001/watch-tokens', { method: 'POST', body: { viewerId: 'v-zh', nickname: '张三丰' } });
    expect(res.status).toBe(200);
    const [call] = fx.sim.calls({ endpoint: 'get-watch-api-token' });
    expect(call?.params['nickname']).toBe('张三丰');
  });

  it('when a body is not UTF-8 (a GBK nickname), then the simulator refuses it as a signature check would', async () => {
    const params = signParams({ appId: TEST_ACCOUNT.appId, timestamp: clock.now(), channelId: '1000001', viewerId: 'v-gbk', nickname: '张三' }, TEST_ACCOUNT.appSecret);
    // The nickname's GBK bytes, percent-encoded: what a client that is not UTF-8 would send.
    const body = new URLSearchParams(params).toString().replace(encodeURIComponent('张三'), '%D5%C5%C8%FD');
    const res = await request(`${fx.sim.url}/live/v3/channel/watch/get-watch-api-token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8' },
      body,
    });
    const envelope = (await res.body.json()) as { code: number; message: string };
    expect(envelope.message).toBe('invalid signature.');
    const gbk = await request(`${fx.sim.url}/live/v3/channel/watch/get-watch-api-token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded; charset=GBK' },
      body: new URLSearchParams(params).toString(),
    });
    expect(((await gbk.body.json()) as { message: string }).message).toBe('invalid signature.');
  });
});

describe('errors carry the codes of the table', () => {
  it('upstream_quota_exceeded is a 429 worth retrying later', () => {
    const err = new BrokerError('upstream_quota_exceeded', 'x', { retryAfterMs: 1000 });
    expect([err.status, err.retryable]).toEqual([429, true]);
  });
});
