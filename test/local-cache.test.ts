import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/lib/clock.js';
import { createLogger } from '../src/lib/logger.js';
import { LocalTokenCache } from '../src/store/local-token-cache.js';
import type { PolyvSimulator } from '../src/sim/polyv-simulator.js';
import { RedisKeys } from '../src/store/redis-keys.js';
import type { CachedToken } from '../src/store/token-store.js';
import { api, eventually, redisUrl, startBroker, startSim, testConfig, uniquePrefix, type TestBroker, type TokenBody } from './support/harness.js';


let sim: PolyvSimulator;
let redis: Redis;
const brokers: TestBroker[] = [];
const caches: LocalTokenCache[] = [];

/** A long max age: whatever a replica learns within a test, it learns from pub/sub, not from its entry ageing. */
const LONG_MAX_AGE = { BROKER_ROLE: 'api', BROKER_LOCAL_CACHE_MAX_AGE_MS: '60000' };
/** How long a pub/sub message may take to reach the other replica in these tests. */
const PUBSUB_WAIT_MS = 1000;

async function broker(env: Record<string, string>, clock?: ManualClock): Promise<TestBroker> {
  const b = await startBroker(testConfig(sim.url, env), clock === undefined ? {} : { clock });
  brokers.push(b);
  return b;
}

/** Two replicas sharing one Redis prefix, as two pods of one deployment would. */
async function twoReplicas(env: Record<string, string> = {}): Promise<[TestBroker, TestBroker]> {
  const shared = { ...LONG_MAX_AGE, BROKER_REDIS_PREFIX: uniquePrefix(), ...env };
  return [await broker(shared), await broker(shared)];
}

const read = (b: TestBroker, channelId: string, key?: string) =>
  api<TokenBody>(b.url, `/v1/channels/${channelId}/token`, key === undefined ? {} : { key });

/** Reads until the replica has the token in memory: the first read fetches, the second fills the cache. */
async function cacheOn(b: TestBroker, channelId: string): Promise<TokenBody> {
  await read(b, channelId);
  const res = await read(b, channelId);
  expect(res.status).toBe(200);
  return res.body;
}

/** Removes the token from Redis behind the broker's back (no announcement): only memory can still serve it. */
async function dropFromRedisSilently(b: TestBroker, channelId: string): Promise<void> {
  const keys = new RedisKeys(b.app.config.redisPrefix);
  expect(await redis.del(keys.token(b.app.accounts.defaultAccount.appId, channelId))).toBe(1);
}

const polyvCalls = (channelId: string) => sim.calls({ endpoint: 'get-channel-token', channelId }).length;

beforeAll(async () => {
  sim = await startSim();
  redis = new Redis(redisUrl());
});
afterEach(async () => {
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
  await Promise.all(caches.splice(0).map((c) => c.stop()));
  sim.resetCalls();
});
afterAll(async () => {
  await sim.close();
  await redis.quit();
});

describe('the in-process token cache across replicas', () => {
  it('when a replica has the token in memory, then it serves it without Redis, with the same answer as the express route', async () => {
    const [a] = await twoReplicas();
    const cached = await cacheOn(a, '1000001');
    await dropFromRedisSilently(a, '1000001');

    const fast = await read(a, '1000001');
    expect(fast.status).toBe(200);
    expect(fast.body).toEqual(cached);
    expect(polyvCalls('1000001')).toBe(1);

    // The same read in a spelling the fast route leaves to express: same status, body and headers.
    const viaExpress = await api<TokenBody>(a.url, '/v1/channels/1000001/token?disposable=false');
    expect(viaExpress.status).toBe(200);
    expect(viaExpress.body).toEqual(fast.body);
    for (const h of ['content-type', 'content-length', 'cache-control']) {
      expect(fast.headers.get(h), h).toBe(viaExpress.headers.get(h));
    }
  });

  it('when the key is missing or wrong, then a token in memory is not served: 401 as before', async () => {
    const [a] = await twoReplicas();
    await cacheOn(a, '1000001');
    for (const key of [null, 'not-a-valid-key-at-all-0000']) {
      const res = await api<{ error: { code: string } }>(a.url, '/v1/channels/1000001/token', { key });
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('unauthorized');
      expect(res.headers.get('www-authenticate')).toContain('Bearer');
    }
  });

  it('when replica A refreshes a token, then replica B serves the new one as soon as the pub/sub message arrives', async () => {
    const [a, b] = await twoReplicas();
    const old = await cacheOn(b, '1000002');
    const fresh = await a.app.service.forceRefresh(a.app.accounts.defaultAccount, '1000002');
    expect(fresh.token).not.toBe(old.channelToken);

    const seen = await eventually(async () => {
      const res = await read(b, '1000002');
      return res.body.channelToken === fresh.token ? res : undefined;
    }, PUBSUB_WAIT_MS, 10);
    expect(seen.body.expireTime).toBe(fresh.expireTime);
    expect(polyvCalls('1000002')).toBe(2);
  });

  it('when a consumer reports the token as rejected on A, then B stops serving it (compare-and-refresh invalidates B)', async () => {
    const [a, b] = await twoReplicas();
    const old = await cacheOn(b, '1000003');
    const refreshed = await api<TokenBody>(a.url, '/v1/channels/1000003/token/refresh', {
      method: 'POST',
      body: { rejectedToken: old.channelToken },
    });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.channelToken).not.toBe(old.channelToken);
    // A answers with the new token at once: its own write dropped its entry synchronously.
    expect((await read(a, '1000003')).body.channelToken).toBe(refreshed.body.channelToken);

    await eventually(async () => (await read(b, '1000003')).body.channelToken === refreshed.body.channelToken, PUBSUB_WAIT_MS, 10);
    expect(polyvCalls('1000003')).toBe(2);
  });

  it('when a channel is deleted on A, then B no longer serves its token from memory', async () => {
    const [a, b] = await twoReplicas();
    const old = await cacheOn(b, '1000004');
    expect((await api(a.url, '/v1/channels/1000004', { method: 'DELETE' })).status).toBe(204);

    // B forgets the entry, finds nothing in Redis and fetches a new token (the old one was forgotten).
    const after = await eventually(async () => {
      const res = await read(b, '1000004');
      return res.body.channelToken !== old.channelToken ? res : undefined;
    }, PUBSUB_WAIT_MS, 10);
    expect(after.status).toBe(200);
    expect(polyvCalls('1000004')).toBe(2);
  });

  it('when the entry reaches its max age, then it is read from Redis again even without a message', async () => {
    const [a] = await twoReplicas({ BROKER_LOCAL_CACHE_MAX_AGE_MS: '200' });
    const cached = await cacheOn(a, '1000005');
    await dropFromRedisSilently(a, '1000005');
    expect((await read(a, '1000005')).body).toEqual(cached);
    await new Promise((r) => setTimeout(r, 250));
    const after = await read(a, '1000005');
    expect(after.body.channelToken).not.toBe(cached.channelToken);
    expect(polyvCalls('1000005')).toBe(2);
  });
});

describe('the in-process token cache and the minimum TTL', () => {
  it('when the token in memory gets below BROKER_MIN_TTL_SECONDS, then it is not served, even inside the max age', async () => {
    // Broker and simulator share a hand-moved clock: tokens live 70 s and may be served while 60 s are left.
    const clock = new ManualClock(Date.now());
    await sim.close();
    sim = await startSim({ clock });
    const b = await broker(
      {
        ...LONG_MAX_AGE,
        BROKER_REDIS_PREFIX: uniquePrefix(),
        BROKER_TOKEN_EXPIRE_SECONDS: '70',
        BROKER_REFRESH_BEFORE_SECONDS: '5',
        BROKER_MIN_TTL_SECONDS: '60',
      },
      clock,
    );
    const cached = await cacheOn(b, '2000001');
    await dropFromRedisSilently(b, '2000001');

    clock.set(cached.expireTime - 60_000);
    const atLimit = await read(b, '2000001');
    expect(atLimit.body).toEqual(cached); // exactly the minimum left: still servable, from memory

    clock.advance(1);
    const below = await read(b, '2000001');
    expect(below.status).toBe(200);
    expect(below.body.channelToken).not.toBe(cached.channelToken);
    expect(below.body.expireTime - clock.now()).toBeGreaterThanOrEqual(60_000);
    expect(polyvCalls('2000001')).toBe(2);
  });
});

describe('LocalTokenCache', () => {
  const token = (n: number, expireTime: number): CachedToken => ({ token: `t${n}`, expireTime, version: n, fetchedAt: 0 });

  async function startedCache(options: { clock: ManualClock; maxEntries?: number; maxAgeMs?: number; name?: string }) {
    const subscriber = new Redis(redisUrl(), {
      lazyConnect: true,
      autoResubscribe: false,
      connectionName: options.name ?? 'ptb-test-local-cache',
    });
    const cache = new LocalTokenCache({
      subscriber,
      channel: new RedisKeys(uniquePrefix()).events(),
      clock: options.clock,
      logger: createLogger('silent'),
      minTtlMs: 60_000,
      maxAgeMs: options.maxAgeMs ?? 10 * 3_600_000,
      maxEntries: options.maxEntries ?? 100,
    });
    caches.push(cache);
    await cache.start();
    return cache;
  }

  it('when tokens age with a max age longer than their life, then none is served with less than the minimum TTL left', async () => {
    const clock = new ManualClock(1_000_000);
    const cache = await startedCache({ clock });
    cache.fill('app', '1', token(1, clock.now() + 3_600_000), cache.mark());
    for (let left = 3_600_000; left > 0; left -= 7_000) {
      clock.set(1_000_000 + 3_600_000 - left);
      const got = cache.get('app', '1');
      if (got !== undefined) expect(got.expireTime - clock.now()).toBeGreaterThanOrEqual(60_000);
      else expect(left).toBeLessThan(60_000);
    }
    // A token that arrives already below the minimum is not even stored.
    cache.fill('app', '2', token(2, clock.now() + 59_999), cache.mark());
    expect(cache.get('app', '2')).toBeUndefined();
  });

  it('when more channels are filled than maxEntries, then the size stays at the bound and the oldest go first', async () => {
    const clock = new ManualClock(1_000_000);
    const cache = await startedCache({ clock, maxEntries: 3 });
    for (let i = 1; i <= 10; i += 1) {
      cache.fill('app', String(i), token(i, clock.now() + 3_600_000), cache.mark());
      expect(cache.size).toBeLessThanOrEqual(3);
    }
    expect(cache.size).toBe(3);
    expect(['8', '9', '10'].map((ch) => cache.get('app', ch)?.token)).toEqual(['t8', 't9', 't10']);
    expect(cache.get('app', '7')).toBeUndefined();
  });

  it('when an invalidation happens while a read is in flight, then that read is not stored', async () => {
    const clock = new ManualClock(1_000_000);
    const cache = await startedCache({ clock });
    const mark = cache.mark();
    cache.invalidate('app', '1');
    cache.fill('app', '1', token(1, clock.now() + 3_600_000), mark);
    expect(cache.get('app', '1')).toBeUndefined();
  });

  it('when the subscription connection drops, then the whole cache is emptied and serves again only after resubscribing', async () => {
    const clock = new ManualClock(1_000_000);
    const name = `ptb-test-sub-${uniquePrefix()}`;
    const cache = await startedCache({ clock, name });
    cache.fill('app', '1', token(1, clock.now() + 3_600_000), cache.mark());
    expect(cache.get('app', '1')?.token).toBe('t1');

    const clients = await redis.client('LIST');
    const id = /id=(\d+) [^\n]* name=(\S*)/g;
    const ours = [...String(clients).matchAll(id)].find((m) => m[2] === name)?.[1];
    expect(ours).toBeDefined();
    await redis.client('KILL', 'ID', ours!);

    await eventually(async () => !cache.active, 2000, 5);
    expect(cache.size).toBe(0);
    expect(cache.get('app', '1')).toBeUndefined();
    await eventually(async () => cache.active, 5000, 20);
    expect(cache.size).toBe(0);
  });
});
