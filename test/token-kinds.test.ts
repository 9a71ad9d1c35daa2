import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PolyvSimulator } from '../src/sim/polyv-simulator.js';
import { WATCH_API_TOKEN_LIFETIME_MS } from '../src/service/viewer-token-service.js';
import { api, eventually, redisUrl, startBroker, startSim, testConfig, uniquePrefix, type TestBroker, type ErrorBody } from './support/harness.js';


let sim: PolyvSimulator;
let redis: Redis;
const brokers: TestBroker[] = [];
/** Moves the broker's and the simulator's time together (PolyV checks the signed timestamp). */
let offsetMs = 0;
const clock = { now: () => Date.now() + offsetMs };

async function broker(env: Record<string, string> = {}): Promise<TestBroker> {
  const b = await startBroker(testConfig(sim.url, { BROKER_ROLE: 'api', ...env }), { clock });
  brokers.push(b);
  return b;
}

beforeAll(async () => {
  sim = await startSim({ clock });
  redis = new Redis(redisUrl());
});
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
  sim.setFault(null);
  sim.resetCalls();
  offsetMs = 0;
});
afterAll(async () => {
  await sim.close();
  await redis.quit();
});

const calls = (filter: Parameters<PolyvSimulator['calls']>[0]) => sim.calls(filter).length;

describe('viewer watch-API tokens: POST /v1/channels/{id}/watch-tokens', () => {
  it('when a viewer asks twice, then one PolyV call; a changed nickname gets its own token', async () => {
    const b = await broker();
    const before = Date.now();
    const first = await api<{ token: string; expireTime: number }>(b.url, '/v1/channels/1000001/watch-tokens', {
      method: 'POST',
      body: { viewerId: 'viewer_001', nickname: '张三', avatar: 'https://example.com/a.png?x=1&y=2' },
    });
    expect(first.status).toBe(200);
    expect(Object.keys(first.body).sort()).toEqual(['expireTime', 'token']);
    expect(sim.checkToken('watch-api', '1000001', first.body.token)).toEqual({ valid: true });
    // conservative: counted from before the call, never past PolyV's 5 hours
    expect(first.body.expireTime).toBeGreaterThanOrEqual(before + WATCH_API_TOKEN_LIFETIME_MS);
    expect(first.body.expireTime).toBeLessThanOrEqual(Date.now() + WATCH_API_TOKEN_LIFETIME_MS);
    const sent = sim.calls({ endpoint: 'get-watch-api-token' })[0]!.params;
    expect(sent).toMatchObject({ channelId: '1000001', viewerId: 'viewer_001', nickname: '张三' });

    const again = await api<{ token: string }>(b.url, '/v1/channels/1000001/watch-tokens', {
      method: 'POST',
      body: { viewerId: 'viewer_001', nickname: '张三', avatar: 'https://example.com/a.png?x=1&y=2' },
    });
    expect(again.body.token).toBe(first.body.token);
    expect(calls({ endpoint: 'get-watch-api-token' })).toBe(1);

    const renamed = await api<{ token: string }>(b.url, '/v1/channels/1000001/watch-tokens', {
      method: 'POST',
      body: { viewerId: 'viewer_001', nickname: '李四', avatar: 'https://example.com/a.png?x=1&y=2' },
    });
    expect(renamed.body.token).not.toBe(first.body.token);
    expect(calls({ endpoint: 'get-watch-api-token' })).toBe(2);
  });

  it('when the body is bad, then 400 with a clear message and no PolyV call', async () => {
    const b = await broker();
    const cases: Array<[unknown, RegExp]> = [
      [{}, /viewerId is required/],
      [{ viewerId: '' }, /viewerId must be 1-64/],
      [{ viewerId: 'x'.repeat(65) }, /viewerId must be 1-64/],
      [{ viewerId: '   ' }, /blank/],
      [{ viewerId: 'v', nickname: 42 }, /nickname/],
      [{ viewerId: 'v', avatar: 'javascript:alert(1)' }, /avatar must be an http\(s\) URL/],
      [{ viewerId: 'v', admin: true }, /unknown field/],
      [[1, 2], /./],
    ];
    for (const [body, message] of cases) {
      const res = await api<ErrorBody>(b.url, '/v1/channels/1000001/watch-tokens', { method: 'POST', body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(res.body.error.message).toMatch(message);
    }
    expect(sim.calls().length).toBe(0);
  });

  it('when 20 requests for one viewer hit two replicas at once, then PolyV is called once', async () => {
    const env = { BROKER_REDIS_PREFIX: uniquePrefix() };
    const [a, c] = await Promise.all([broker(env), broker(env)]);
    sim.setFault({ kind: 'latency', ms: 150 });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        api<{ token: string }>((i % 2 ? a : c).url, '/v1/channels/1000002/watch-tokens', {
          method: 'POST',
          body: { viewerId: 'crowd' },
        }),
      ),
    );
    expect(new Set(results.map((r) => r.body.token)).size).toBe(1);
    expect(calls({ endpoint: 'get-watch-api-token' })).toBe(1);
  });

  it('when a cached token nears its end (under the minimum TTL), then a new one is fetched; entries expire in Redis by themselves', async () => {
    const prefix = uniquePrefix();
    const b = await broker({ BROKER_REDIS_PREFIX: prefix });
    const first = await api<{ token: string }>(b.url, '/v1/channels/1000003/watch-tokens', {
      method: 'POST',
      body: { viewerId: 'late' },
    });
    const [key] = await redis.keys(`${prefix}:*watch-token*`);
    expect(key).toBeDefined();
    expect(await redis.pttl(key!)).toBeGreaterThan(WATCH_API_TOKEN_LIFETIME_MS - 10_000);
    const bytes = await redis.memory('USAGE', key!);
    console.log(`memory per cached viewer token: ${bytes} bytes (key ${key!.length} chars)`);
    expect(bytes).toBeLessThan(400);
    offsetMs = WATCH_API_TOKEN_LIFETIME_MS - 30_000; // 30 s left < 60 s minimum
    const second = await api<{ token: string; expireTime: number }>(b.url, '/v1/channels/1000003/watch-tokens', {
      method: 'POST',
      body: { viewerId: 'late' },
    });
    expect(second.status).toBe(200);
    expect(second.body.token).not.toBe(first.body.token);
    expect(calls({ endpoint: 'get-watch-api-token' })).toBe(2);
  });

  it('has its own per-channel budget: when spent, cached viewers are still served and new ones get 503', async () => {
    const b = await broker({ BROKER_WATCH_TOKEN_BUDGET_PER_HOUR: '2' });
    const ask = (viewerId: string) =>
      api<ErrorBody & { token: string }>(b.url, '/v1/channels/1000004/watch-tokens', { method: 'POST', body: { viewerId } });
    expect((await ask('a')).status).toBe(200);
    expect((await ask('b')).status).toBe(200);
    const refused = await ask('c');
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('budget_exhausted');
    expect(refused.headers.get('retry-after')).not.toBeNull();
    expect((await ask('a')).status).toBe(200);
    // the channel-token budget is untouched
    expect((await api(b.url, '/v1/channels/1000004/token')).status).toBe(200);
  });
});

describe('common token (deprecated): GET /v1/channels/{id}/common-token', () => {
  it('serves token and mediaChannelKey with Deprecation and a Link to the successor, cached', async () => {
    const b = await broker({ BROKER_COMMON_TOKEN_TTL_SECONDS: '600' });
    const res = await api<{ token: string; mediaChannelKey: string; expireTime: number }>(b.url, '/v1/channels/1000005/common-token');
    expect(res.status).toBe(200);
    expect(res.headers.get('deprecation')).toBe('true');
    expect(res.headers.get('link')).toBe('</v1/channels/1000005/token>; rel="successor-version"');
    expect(res.body.mediaChannelKey.length).toBeGreaterThan(32);
    expect(sim.checkToken('common', '1000005', res.body.token)).toEqual({ valid: true });
    expect(Math.abs(res.body.expireTime - (Date.now() + 600_000))).toBeLessThan(5000);
    const again = await api<{ token: string }>(b.url, '/v1/channels/1000005/common-token');
    expect(again.body.token).toBe(res.body.token);
    expect(calls({ endpoint: 'common-get-token' })).toBe(1);
  });

  it('compare-and-refresh: a storm of reports of the current token costs one call; a stale report costs none', async () => {
    const b = await broker();
    const current = await api<{ token: string }>(b.url, '/v1/channels/2000001/common-token');
    const reports = await Promise.all(
      Array.from({ length: 15 }, () =>
        api<{ token: string }>(b.url, '/v1/channels/2000001/common-token/refresh', {
          method: 'POST',
          body: { rejectedToken: current.body.token },
        }),
      ),
    );
    expect(reports.every((r) => r.status === 200)).toBe(true);
    const fresh = new Set(reports.map((r) => r.body.token));
    expect(fresh.size).toBe(1);
    expect(fresh.has(current.body.token)).toBe(false);
    expect(calls({ endpoint: 'common-get-token' })).toBe(2);
    const stale = await api<{ token: string }>(b.url, '/v1/channels/2000001/common-token/refresh', {
      method: 'POST',
      body: { rejectedToken: current.body.token },
    });
    expect(fresh.has(stale.body.token)).toBe(true);
    expect(calls({ endpoint: 'common-get-token' })).toBe(2);
    const bad = await api<ErrorBody>(b.url, '/v1/channels/2000001/common-token/refresh', { method: 'POST', body: {} });
    expect(bad.status).toBe(400);
  });
});

describe('single-use watch-page URLs: POST /v1/channels/{id}/watch-urls', () => {
  it('on demand: every caller gets its own fresh URL, valid for an hour', async () => {
    const b = await broker();
    const before = Date.now();
    const urls = await Promise.all(
      Array.from({ length: 5 }, () => api<{ url: string; expireTime: number }>(b.url, '/v1/channels/2000002/watch-urls', { method: 'POST' })),
    );
    expect(new Set(urls.map((u) => u.body.url)).size).toBe(5);
    for (const u of urls) {
      expect(u.status).toBe(200);
      expect(sim.checkToken('watch-url', '2000002', u.body.url)).toEqual({ valid: true });
      expect(u.body.expireTime).toBeGreaterThanOrEqual(before + 3_600_000);
      expect(u.body.expireTime).toBeLessThanOrEqual(Date.now() + 3_600_000);
    }
    expect(calls({ endpoint: 'get-token-watch-url' })).toBe(5);
  });

  it('with a pool: 30 concurrent callers on two replicas get 30 different URLs, each usable exactly once; the worker refills the pool', async () => {
    const env = { BROKER_REDIS_PREFIX: uniquePrefix(), BROKER_WATCH_URL_POOL: '5', BROKER_CHANNELS: '2000003' };
    const worker = await broker({ ...env, BROKER_ROLE: 'all' });
    const other = await broker(env);
    const account = worker.app.accounts.defaultAccount;
    await eventually(async () => (await worker.app.watchUrls.poolSize(account, '2000003')) === 5, 15_000);
    const taken = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        api<{ url: string }>((i % 2 ? worker : other).url, '/v1/channels/2000003/watch-urls', { method: 'POST' }),
      ),
    );
    expect(taken.every((t) => t.status === 200)).toBe(true);
    const urls = taken.map((t) => t.body.url);
    expect(new Set(urls).size).toBe(30);
    for (const url of urls) {
      const path = new URL(url).pathname + new URL(url).search;
      const first = await fetch(`${sim.url}${path}`);
      expect(first.status, url).toBe(200);
    }
    const hits = async (b: TestBroker) =>
      (await b.app.metrics.tokensServed.get()).values
        .filter((v) => v.labels['kind'] === 'watch_url' && v.labels['outcome'] === 'hit')
        .reduce((n, v) => n + v.value, 0);
    expect((await hits(worker)) + (await hits(other))).toBeGreaterThanOrEqual(5);
    const reused = await fetch(`${sim.url}${new URL(urls[0]!).pathname}${new URL(urls[0]!).search}`);
    expect(reused.status).toBe(403);
    await eventually(async () => (await worker.app.watchUrls.poolSize(account, '2000003')) === 5, 15_000);
  });

  it('drops pooled URLs once they are older than the pool maximum age instead of handing them out', async () => {
    const b = await broker({ BROKER_WATCH_URL_POOL: '3', BROKER_WATCH_URL_POOL_MAX_AGE_SECONDS: '600' });
    const account = b.app.accounts.defaultAccount;
    expect(await b.app.watchUrls.refill(account, '2000002')).toBe(3);
    const pooled = await redis.lrange(`${b.app.config.redisPrefix}:{${account.appId}:2000002}:watch-urls`, 0, -1);
    offsetMs = 601_000;
    const res = await api<{ url: string }>(b.url, '/v1/channels/2000002/watch-urls', { method: 'POST' });
    expect(res.status).toBe(200);
    expect(pooled.some((p) => p.includes(res.body.url))).toBe(false);
    expect(await b.app.watchUrls.poolSize(account, '2000002')).toBe(0);
  });
});

describe('disposable channel tokens: GET /v1/channels/{id}/token?disposable=true', () => {
  it('returns a fresh one-time token each time, never cached, drawn from the channel budget', async () => {
    const b = await broker({ BROKER_CHANNEL_BUDGET_PER_HOUR: '3' });
    const cached = await api<{ channelToken: string }>(b.url, '/v1/channels/1000001/token');
    const d1 = await api<{ channelToken: string; disposable: boolean; expireTime: number }>(
      b.url,
      '/v1/channels/1000001/token?disposable=true',
    );
    const d2 = await api<{ channelToken: string }>(b.url, '/v1/channels/1000001/token?disposable=true');
    expect(d1.status).toBe(200);
    expect(d1.body.disposable).toBe(true);
    expect(new Set([cached.body.channelToken, d1.body.channelToken, d2.body.channelToken]).size).toBe(3);
    const disposableCalls = sim.calls({ endpoint: 'get-channel-token' }).filter((c) => c.params['disposable'] === 'true');
    expect(disposableCalls).toHaveLength(2);
    // the cached token is untouched and still served
    expect((await api<{ channelToken: string }>(b.url, '/v1/channels/1000001/token')).body.channelToken).toBe(cached.body.channelToken);
    const spent = await api<ErrorBody>(b.url, '/v1/channels/1000001/token?disposable=true');
    expect([spent.status, spent.body.error.code]).toEqual([503, 'budget_exhausted']);
    const bad = await api<ErrorBody>(b.url, '/v1/channels/1000001/token?disposable=yes');
    expect(bad.status).toBe(400);
  });
});

describe('encryption at rest covers every token kind', () => {
  it('with BROKER_ENCRYPTION_KEY, viewer tokens, common tokens and pooled URLs are ciphertext in Redis, and still served', async () => {
    const prefix = uniquePrefix();
    const b = await broker({
      BROKER_REDIS_PREFIX: prefix,
      BROKER_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
      BROKER_WATCH_URL_POOL: '2',
    });
    const viewer = await api<{ token: string }>(b.url, '/v1/channels/1000001/watch-tokens', { method: 'POST', body: { viewerId: 'enc' } });
    const common = await api<{ token: string; mediaChannelKey: string }>(b.url, '/v1/channels/1000001/common-token');
    await b.app.watchUrls.refill(b.app.accounts.defaultAccount, '1000001');
    const pooled = await api<{ url: string }>(b.url, '/v1/channels/1000001/watch-urls', { method: 'POST' });
    expect([viewer.status, common.status, pooled.status]).toEqual([200, 200, 200]);
    // served again from the encrypted cache
    const again = await api<{ token: string }>(b.url, '/v1/channels/1000001/watch-tokens', { method: 'POST', body: { viewerId: 'enc' } });
    expect(again.body.token).toBe(viewer.body.token);
    expect(calls({ endpoint: 'get-watch-api-token' })).toBe(1);

    const keys = await redis.keys(`${prefix}:*`);
    const dump: string[] = [];
    for (const key of keys) {
      const type = await redis.type(key);
      if (type === 'string') dump.push((await redis.get(key)) ?? '');
      if (type === 'list') dump.push(...(await redis.lrange(key, 0, -1)));
      if (type === 'hash') dump.push(...Object.values(await redis.hgetall(key)));
    }
    const all = dump.join('\n');
    expect(all).toMatch(/v1:/);
    // one URL is still pooled: no watch-URL token may be readable there either
    expect(await b.app.watchUrls.poolSize(b.app.accounts.defaultAccount, '1000001')).toBe(1);
    expect(all).not.toContain('token=');
    for (const secret of [viewer.body.token, common.body.token, common.body.mediaChannelKey, new URL(pooled.body.url).searchParams.get('token')!]) {
      expect(all).not.toContain(secret);
    }
  });
});
