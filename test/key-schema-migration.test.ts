import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  POLICIES_OFF,
  SHORT_TOKENS,
  TEST_ACCOUNT,
  TEST_KEY,
  api,
  eventually,
  redisUrl,
  testConfig,
  uniquePrefix,
  useSimulator,
  type TestBroker,
  type TokenBody,
} from './support/harness.js';
import { startV1Broker, type V1Broker } from './support/v1-broker.js';

/**
 * A rolling upgrade from key schema v1 (the 0.2.0 broker, run from its release build) to v2, on one Redis:
 * two old replicas write a v1 data set, two new replicas start beside them, all four serve and refresh
 * together for two token lifetimes, then the old ones stop.
 */
const fx = useSimulator({ invalidatePreviousChannelToken: false });
/** The old replicas get their settings as environment, so the policies testConfig turns off are listed too. */
const SHORT = { ...SHORT_TOKENS, ...POLICIES_OFF, BROKER_RECONCILE_INTERVAL_SECONDS: '2' };
const CHANNELS = ['1000001', '1000002', '1000003'];

let redis: Redis;
const olds: V1Broker[] = [];
beforeAll(() => {
  redis = new Redis(redisUrl());
});
afterAll(async () => {
  await Promise.all(olds.map((o) => o.stop()));
  await redis.quit();
});

const calls = (channelId: string, from = 0, to = Number.POSITIVE_INFINITY) =>
  fx.sim.calls({ endpoint: 'get-channel-token', channelId }).filter((c) => c.code === 200 && c.at >= from && c.at <= to).map((c) => c.at);

async function read(url: string, channelId: string): Promise<TokenBody> {
  const res = await fetch(`${url}/v1/channels/${channelId}/token`, { headers: { authorization: `Bearer ${TEST_KEY}` } });
  expect(res.status, `${url} ${channelId}`).toBe(200);
  const body = (await res.json()) as TokenBody;
  expect(fx.sim.checkToken('channel', channelId, body.channelToken), `${url} ${channelId}`).toEqual({ valid: true });
  return body;
}

describe('key schema v1 -> v2', () => {
  it('when v2 replicas join a v1 fleet, then they migrate its warm set at start-up, and old and new together lose no token and make no extra PolyV call', async () => {
    const prefix = uniquePrefix();
    const { appId } = TEST_ACCOUNT;
    const env = (extra: Record<string, string> = {}) => ({
      REDIS_URL: redisUrl(),
      POLYV_BASE_URL: fx.sim.url,
      POLYV_APP_ID: appId,
      POLYV_APP_SECRET: TEST_ACCOUNT.appSecret,
      BROKER_API_KEYS: `svc-a:${TEST_KEY}`,
      BROKER_REDIS_PREFIX: prefix,
      BROKER_CHANNELS: '1000001',
      LOG_LEVEL: 'warn',
      ...SHORT,
      ...extra,
    });

    // The v1 data set, written by the v1 code: a configured channel and two channels warmed by reads.
    olds.push(await startV1Broker(env()), await startV1Broker(env()));
    await read(olds[0]!.url, '1000002');
    await read(olds[1]!.url, '1000003');
    await eventually(async () => (await redis.scard(`${prefix}:{${appId}}:warm`)) === 3);
    expect(await redis.exists(`{${prefix}}:bull:refresh:refresh-${appId}-1000002`)).toBe(1);
    const callsBefore = CHANNELS.map((ch) => calls(ch).length);

    // Two v2 replicas join; their workers migrate at start-up.
    const news: TestBroker[] = [];
    for (let i = 0; i < 2; i += 1) news.push(await fx.broker(testConfig(fx.sim.url, { ...SHORT, BROKER_REDIS_PREFIX: prefix, BROKER_CHANNELS: '1000001' })));
    expect(await redis.scard(`${prefix}:{${appId}}:warm`)).toBe(0);
    expect(await redis.get(`${prefix}:{global}:schema-version`)).toBe('2');
    expect((await news[0]!.app.warmSet.entry(appId, '1000001'))?.mode).toBe('pinned');
    expect((await news[0]!.app.warmSet.entry(appId, '1000002'))?.mode).toBe('on-demand');
    expect((await news[0]!.app.warmSet.entry(appId, '1000003'))?.mode).toBe('on-demand');

    // No token lost: the tokens the v1 replicas fetched are served by the new ones, without a PolyV call.
    for (const ch of CHANNELS) await read(news[0]!.url, ch);
    expect(CHANNELS.map((ch) => calls(ch).length)).toEqual(callsBefore);

    // Two token lifetimes with old and new together; an old replica warms one more channel meanwhile.
    const from = Date.now();
    const urls = [...olds.map((o) => o.url), ...news.map((n) => n.url)];
    await read(olds[1]!.url, '1000004');
    let i = 0;
    while (Date.now() - from < 12_000) {
      for (const ch of [...CHANNELS, '1000004']) await read(urls[i++ % urls.length]!, ch);
      await new Promise((r) => setTimeout(r, 50));
    }
    const to = Date.now();
    // The channel an old replica warmed meanwhile is migrated by the reconcile of a new worker.
    await eventually(async () => (await news[1]!.app.warmSet.entry(appId, '1000004')) !== null, 5000);

    // No extra PolyV call: each channel was refreshed once per cycle (about 3 s), whichever replica ran it.
    for (const ch of [...CHANNELS, '1000004']) {
      const times = calls(ch, from, to);
      expect(times.length, ch).toBeGreaterThanOrEqual(3);
      expect(times.length, ch).toBeLessThanOrEqual(5);
      for (let k = 1; k < times.length; k += 1) expect(times[k]! - times[k - 1]!, `${ch}: two calls of one refresh`).toBeGreaterThan(2000);
    }

    // The old replicas go; the new ones carry every channel on, and v1's jobs run out.
    await Promise.all(olds.splice(0).map((o) => o.stop()));
    const stoppedAt = Date.now();
    await eventually(async () => CHANNELS.every((ch) => calls(ch, stoppedAt).length >= 1), 8000, 100);
    for (const ch of CHANNELS) await read(news[1]!.url, ch);
    await eventually(async () => (await redis.keys(`{${prefix}}:bull:refresh:refresh-*`)).length === 0, 10_000, 200);
    const states = await api<{ channels: Array<{ channelId: string; warm: unknown }> }>(news[0]!.url, '/v1/channels');
    expect(states.body.channels.map((c) => [c.channelId, c.warm])).toEqual([
      ['1000001', 'pinned'],
      ['1000002', 'on-demand'],
      ['1000003', 'on-demand'],
      ['1000004', 'on-demand'],
    ]);
  }, 90_000);
});
