import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PolyvAccount } from '../src/config/config.js';
import { ApiKeyAuth } from '../src/http/api-key-auth.js';
import { ConsumerRateLimiter } from '../src/http/consumer-rate-limiter.js';
import { withFastTokenRoute } from '../src/http/fast-token-route.js';
import { ManualClock } from '../src/lib/clock.js';
import { BrokerMetrics } from '../src/metrics/broker-metrics.js';
import { AccountRegistry } from '../src/service/account-registry.js';
import type { ChannelTokenService, ServedToken } from '../src/service/channel-token-service.js';

/**
 * The fast route in front of a plain Node listener, no express anywhere: what it does not serve reaches the
 * listener untouched (here: 599 "fell through"), so it cannot depend on anything express adds to a request.
 */
const ACCOUNT: PolyvAccount = { name: 'default', appId: 'app1', appSecret: 'secret-0123456789', channels: [] };
const CACHED = new Set(['1000001', '1000002']);
const service = {
  peekToken: (_account: PolyvAccount, channelId: string): ServedToken | undefined =>
    CACHED.has(channelId) ? { channelId, channelToken: `tok-${channelId}`, expireTime: 1_900_000_000_000, outcome: 'hit' } : undefined,
} as unknown as ChannelTokenService;

const metrics = new BrokerMetrics({ defaultMetrics: false });
const auth = new ApiKeyAuth(
  [
    { name: 'free', key: 'free-key-0123456789', rateLimit: { perSecond: 0, burst: 1 } },
    { name: 'tight', key: 'tight-key-0123456789', rateLimit: { perSecond: 1, burst: 1 } },
    { name: 'scoped', key: 'scoped-key-0123456789', scope: { channels: ['1000001'] }, rateLimit: { perSecond: 0, burst: 1 } },
  ],
  { rateLimiter: new ConsumerRateLimiter({ defaults: { perSecond: 0, burst: 1 }, clock: new ManualClock(), metrics }) },
);
let server: Server;
let base: string;
beforeAll(async () => {
  const fellThrough = withFastTokenRoute(
    (_req, res) => {
      res.writeHead(599, { 'Content-Type': 'text/plain' });
      res.end('fell through');
    },
    { service, accounts: new AccountRegistry([ACCOUNT]), auth, metrics },
  );
  server = createServer(fellThrough);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const get = async (path: string, key?: string) => {
  const res = await fetch(`${base}${path}`, key === undefined ? {} : { headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, headers: res.headers, text: await res.text() };
};

describe('the fast token route on a raw Node response', () => {
  it('when the key is valid and the token is cached, then it answers 200 itself with the JSON body and counts a hit', async () => {
    const res = await get('/v1/channels/1000001/token', 'free-key-0123456789');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toEqual({ channelId: '1000001', channelToken: 'tok-1000001', expireTime: 1_900_000_000_000 });
    expect(res.headers.get('cache-control')).toBe('no-store');
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^polyv_broker_serve_duration_seconds_count\{kind="channel",outcome="hit"\} [1-9]/m);
  });

  it('when the key is missing, unknown, out of scope, or the token not cached, then the listener behind gets the request untouched', async () => {
    const refused = [
      await get('/v1/channels/1000001/token'),
      await get('/v1/channels/1000001/token', 'no-such-key-0123456789'),
      await get('/v1/channels/1000002/token', 'scoped-key-0123456789'),
      await get('/v1/channels/1000003/token', 'free-key-0123456789'),
      await get('/v1/accounts/nobody/channels/1000001/token', 'free-key-0123456789'),
    ];
    for (const res of refused) {
      expect([res.status, res.text]).toEqual([599, 'fell through']);
      expect(res.headers.get('www-authenticate')).toBeNull();
    }
    expect((await get('/v1/channels/1000001/token', 'scoped-key-0123456789')).status).toBe(200);
  });

  it('when a consumer is over its rate limit, then the request falls through, charged once and counted once', async () => {
    expect((await get('/v1/channels/1000001/token', 'tight-key-0123456789')).status).toBe(200);
    expect((await get('/v1/channels/1000001/token', 'tight-key-0123456789')).status).toBe(599);
    expect(await metrics.registry.metrics()).toMatch(/^polyv_broker_rate_limited_total\{consumer="tight"\} 1$/m);
  });
});
