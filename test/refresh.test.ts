import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SHORT_TOKENS as SHORT, api, eventually, redisUrl, testConfig, uniquePrefix, useSimulator, type TestBroker, type TokenBody } from './support/harness.js';


const fx = useSimulator({ invalidatePreviousChannelToken: false });
let redis: Redis;


function broker(env: Record<string, string>): Promise<TestBroker> {
  return fx.broker(testConfig(fx.sim.url, env));
}

beforeAll(() => {
  redis = new Redis(redisUrl());
});
afterAll(async () => {
  await redis.quit();
});

const callsFor = (channelId: string) => fx.sim.calls({ endpoint: 'get-channel-token', channelId }).filter((c) => c.code === 200);

/** Reads the token every `everyMs` for `forMs`, checking each one against the simulator as it arrives. */
async function readContinuously(url: string, channelId: string, forMs: number, everyMs = 100) {
  const seen: Array<{ status: number; token: string; remainingMs: number; valid: boolean }> = [];
  const end = Date.now() + forMs;
  while (Date.now() < end) {
    const res = await api<TokenBody>(url, `/v1/channels/${channelId}/token`);
    seen.push({
      status: res.status,
      token: res.body.channelToken,
      remainingMs: res.body.expireTime - Date.now(),
      valid: fx.sim.checkToken('channel', channelId, res.body.channelToken).valid,
    });
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return seen;
}

describe('proactive refresh (BullMQ)', () => {
  it('when a channel is warm, then its token is replaced before expiry and readers only ever see valid tokens from cache', async () => {
    const b = await broker({ ...SHORT, BROKER_CHANNELS: '1000001' });
    await eventually(async () => (await b.app.store.read(b.app.accounts.defaultAccount.appId, '1000001')) !== null);
    const seen = await readContinuously(b.url, '1000001', 8000);
    expect(seen.every((s) => s.status === 200)).toBe(true);
    expect(seen.every((s) => s.valid)).toBe(true);
    expect(Math.min(...seen.map((s) => s.remainingMs))).toBeGreaterThanOrEqual(1000);
    expect(new Set(seen.map((s) => s.token)).size).toBeGreaterThanOrEqual(3);
    // every read was a cache hit: readers of a warm channel never wait for PolyV
    const served = await b.app.metrics.tokensServed.get();
    expect(served.values.filter((v) => v.labels['outcome'] !== 'hit').reduce((n, v) => n + v.value, 0)).toBe(0);
    // one call at warm-up, then one about every 3 s: no more
    expect(callsFor('1000001').length).toBeGreaterThanOrEqual(3);
    expect(callsFor('1000001').length).toBeLessThanOrEqual(5);
  });

  it('when two workers and an API replica share Redis, then each refresh happens once', async () => {
    const env = { ...SHORT, BROKER_CHANNELS: '1000002,1000003', BROKER_REDIS_PREFIX: uniquePrefix() };
    await Promise.all([broker({ ...env, BROKER_ROLE: 'worker' }), broker({ ...env, BROKER_ROLE: 'worker' })]);
    const apiReplica = await broker({ ...env, BROKER_ROLE: 'api', PORT: '0' });
    await new Promise((r) => setTimeout(r, 7500));
    for (const ch of ['1000002', '1000003']) {
      const times = callsFor(ch).map((c) => c.at);
      expect(times.length).toBeGreaterThanOrEqual(2);
      expect(times.length).toBeLessThanOrEqual(4);
      for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThan(2000);
    }
    expect((await api(apiReplica.url, '/v1/channels/1000002/token')).status).toBe(200);
  });

  it('when PolyV fails twice, then the refresh backs off, succeeds before expiry, and readers never notice', async () => {
    const b = await broker({ ...SHORT, BROKER_CHANNELS: '1000004' });
    const appId = b.app.accounts.defaultAccount.appId;
    const first = await eventually(() => b.app.store.read(appId, '1000004'));
    fx.sim.setFault({ kind: 'error-code', code: 500, message: '', times: 2, endpoints: ['get-channel-token'] });
    const seen = await readContinuously(b.url, '1000004', 6000);
    expect(seen.every((s) => s.status === 200 && s.valid && s.remainingMs >= 1000)).toBe(true);
    const now = await b.app.store.read(appId, '1000004');
    expect(now!.token).not.toBe(first.token);
    expect(fx.sim.calls({ endpoint: 'get-channel-token', channelId: '1000004' }).filter((c) => c.faulted)).toHaveLength(2);
    const state = await b.app.service.describe(b.app.accounts.defaultAccount, '1000004');
    expect(state.lastError).toBeNull();
  });
});

describe('reconcile', () => {
  it('when Redis loses all broker data, then reconcile pins BROKER_CHANNELS again and the worker refetches', async () => {
    const prefix = uniquePrefix();
    const b = await broker({ BROKER_CHANNELS: '2000001', BROKER_REDIS_PREFIX: prefix });
    const appId = b.app.accounts.defaultAccount.appId;
    await eventually(() => b.app.store.read(appId, '2000001'));
    expect((await b.app.warmSet.entry(appId, '2000001'))?.mode).toBe('pinned');

    await b.app.queue.queue.obliterate({ force: true });
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    expect(await b.app.warmSet.entry(appId, '2000001')).toBeNull();

    await b.app.worker!.runReconcile();
    expect((await b.app.warmSet.entry(appId, '2000001'))?.mode).toBe('pinned');
    await eventually(() => b.app.store.read(appId, '2000001'));
    expect(callsFor('2000001')).toHaveLength(2);
  });
});

describe('graceful shutdown', () => {
  it('when stopped during a refresh, then the refresh finishes and its token is stored', async () => {
    const prefix = uniquePrefix();
    fx.sim.setFault({ kind: 'latency', ms: 700 });
    const b = await broker({ BROKER_CHANNELS: '2000002', BROKER_REDIS_PREFIX: prefix });
    const appId = b.app.accounts.defaultAccount.appId;
    await new Promise((r) => setTimeout(r, 250));
    expect(await b.app.store.read(appId, '2000002')).toBeNull();
    await b.stop();
    const check = new Redis(redisUrl());
    try {
      expect(await check.hget(`${prefix}:{${appId}:2000002}:token`, 'token')).toMatch(/^[0-9a-f]{32}$/);
    } finally {
      await check.quit();
    }
    // Stopping again (a second signal, or the test fixture after the test) waits for the same stop.
    await expect(b.stop()).resolves.toBeUndefined();
  });
});
