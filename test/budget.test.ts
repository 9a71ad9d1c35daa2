import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BudgetExhaustedError } from '../src/errors/broker-error.js';
import { ManualClock } from '../src/lib/clock.js';
import { CallBudget, HOUR_MS } from '../src/store/call-budget.js';
import { RedisKeys } from '../src/store/redis-keys.js';
import { TokenStore } from '../src/store/token-store.js';
import { redisUrl, uniquePrefix } from './support/redis.js';

let redis: Redis;
beforeAll(() => {
  redis = new Redis(redisUrl());
});
afterAll(async () => {
  await redis.quit();
});

function budgetWith(globalPer10s = 1500, clock = new ManualClock(1_700_000_000_000)) {
  const keys = new RedisKeys(uniquePrefix());
  return { budget: new CallBudget({ redis, keys, clock, globalPer10s }), clock, keys };
}

describe('per-channel rolling-hour budget (Redis, Lua)', () => {
  it('when the limit is reached, then further calls are refused until the oldest call is an hour old', async () => {
    const { budget, clock } = budgetWith();
    const slots = [];
    for (let i = 0; i < 3; i++) {
      slots.push(await budget.take('app', '42', 3));
      clock.advance(60_000);
    }
    expect(slots.map((s) => s.used)).toEqual([1, 2, 3]);
    expect(new Set(slots.map((s) => s.slot)).size).toBe(3);
    const refused = await budget.take('app', '42', 3).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(BudgetExhaustedError);
    expect((refused as BudgetExhaustedError).scope).toBe('channel');
    // oldest call at t0, now t0+3min: it frees at t0+60min, 57 minutes from now
    expect((refused as BudgetExhaustedError).retryAfterMs).toBe(HOUR_MS - 3 * 60_000);
    clock.advance(HOUR_MS - 3 * 60_000 + 1);
    await expect(budget.take('app', '42', 3)).resolves.toMatchObject({ used: 3 });
    expect(await budget.used('app', '42')).toBe(3);
  });

  it('keeps channels and endpoints apart', async () => {
    const { budget } = budgetWith();
    await budget.take('app', '1', 1);
    await expect(budget.take('app', '2', 1)).resolves.toBeDefined();
    await expect(budget.take('app', '1', 1, 'watch-api-token')).resolves.toBeDefined();
    await expect(budget.take('app', '1', 1)).rejects.toBeInstanceOf(BudgetExhaustedError);
  });

  it('when 60 callers race for 10 slots, then exactly 10 win (atomic across connections)', async () => {
    const { keys, clock } = budgetWith();
    const clients = Array.from({ length: 4 }, () => new Redis(redisUrl()));
    try {
      const budgets = clients.map((c) => new CallBudget({ redis: c, keys, clock, globalPer10s: 1500 }));
      const results = await Promise.allSettled(
        Array.from({ length: 60 }, (_, i) => budgets[i % budgets.length]!.take('app', '7', 10)),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
      const slots = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.slot] : []));
      expect(new Set(slots).size).toBe(10);
    } finally {
      await Promise.all(clients.map((c) => c.quit()));
    }
  });

  it('the fleet-wide limiter refuses beyond its 10-s limit across all channels, and frees after 10 s', async () => {
    const { budget, clock } = budgetWith(5);
    for (let i = 0; i < 5; i++) await budget.take('app', String(100 + i), 450);
    const refused = await budget.take('app', '200', 450).catch((e: unknown) => e);
    expect((refused as BudgetExhaustedError).scope).toBe('global');
    // the refused call took no channel slot
    expect(await budget.used('app', '200')).toBe(0);
    expect(await budget.globalUsed()).toBe(5);
    clock.advance(10_001);
    await expect(budget.take('app', '200', 450)).resolves.toBeDefined();
  });

  it('when the channel budget refuses, then the fleet-wide slot taken with it is given back', async () => {
    const { budget } = budgetWith(5);
    await budget.take('app', '300', 1);
    const refused = await budget.take('app', '300', 1).catch((e: unknown) => e);
    expect((refused as BudgetExhaustedError).scope).toBe('channel');
    expect(await budget.globalUsed()).toBe(1);
    expect(await budget.used('app', '300')).toBe(1);
  });
});

describe('versioned token writes', () => {
  it('when a slower refresh with an older version finishes last, then the newer token stays', async () => {
    const keys = new RedisKeys(uniquePrefix());
    const store = new TokenStore({ redis, keys });
    const expireTime = Date.now() + 3_600_000;
    expect(await store.write('app', '9', { token: 'newer', expireTime, version: 5, fetchedAt: 2 })).toBe(true);
    expect(await store.write('app', '9', { token: 'older', expireTime, version: 4, fetchedAt: 3 })).toBe(false);
    expect(await store.write('app', '9', { token: 'same', expireTime, version: 5, fetchedAt: 3 })).toBe(false);
    expect((await store.read('app', '9'))?.token).toBe('newer');
    expect(await store.write('app', '9', { token: 'newest', expireTime, version: 6, fetchedAt: 4 })).toBe(true);
    expect((await store.read('app', '9'))?.token).toBe('newest');
    // the key expires with the token
    const pttl = await redis.pttl(keys.token('app', '9'));
    expect(pttl).toBeGreaterThan(3_500_000);
  });

  it('the refresh lock is taken by one caller, with the token and rejected mark read in the same round trip, and released only by its owner', async () => {
    const store = new TokenStore({ redis, keys: new RedisKeys(uniquePrefix()) });
    await store.write('app', '1', { token: 'a'.repeat(32), expireTime: Date.now() + 3_600_000, version: 1, fetchedAt: Date.now() });
    await store.markRejected('app', '1', 'illegal channel id', 10_000);
    const first = await store.lockAndRead('app', '1', 10_000);
    expect(first.owner).not.toBeNull();
    expect(first.current?.token).toBe('a'.repeat(32));
    expect(first.rejected).toBe('illegal channel id');
    const second = await store.lockAndRead('app', '1', 10_000);
    expect(second.owner).toBeNull();
    expect(second.current?.version).toBe(1);
    const owner = first.owner;
    await store.releaseLock('app', '1', 'someone-else');
    expect(await store.isLocked('app', '1')).toBe(true);
    await store.releaseLock('app', '1', owner!);
    expect(await store.isLocked('app', '1')).toBe(false);
  });
});
