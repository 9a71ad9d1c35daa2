import { afterEach, describe, expect, it } from 'vitest';
import type { ChannelState } from '../src/service/channel-token-service.js';
import {
  LogCapture,
  SHORT_TOKENS,
  api,
  eventually,
  testConfig,
  uniquePrefix,
  useSimulator,
  type TestBroker,
  type TokenBody,
} from './support/harness.js';

/**
 * The warm set follows demand (time-compressed): tokens live 6 s and are refreshed 3 s before expiry (a
 * refresh cycle of about 3 s), and an on-demand channel idles out after 4 s without a read (plus 0.4 s of
 * grace: two of the 0.2-s flushes the idle time gives).
 */
const fx = useSimulator({ invalidatePreviousChannelToken: false });
const SHORT = { ...SHORT_TOKENS, BROKER_IDLE_CHANNEL_SECONDS: '4' };
const IDLE_MS = 4000;
const GRACE_MS = 400;
const CYCLE_MS = 3000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const callTimes = (channelId: string) =>
  fx.sim.calls({ endpoint: 'get-channel-token', channelId }).filter((c) => c.code === 200).map((c) => c.at);

function broker(env: Record<string, string>, options: { logger?: LogCapture['logger'] } = {}): Promise<TestBroker> {
  return fx.broker(testConfig(fx.sim.url, { ...SHORT, ...env }), options);
}

async function state(b: TestBroker, channelId: string): Promise<ChannelState> {
  const res = await api<ChannelState>(b.url, `/v1/channels/${channelId}`);
  expect(res.status).toBe(200);
  return res.body;
}

async function listed(b: TestBroker): Promise<string[]> {
  const res = await api<{ channels: ChannelState[] }>(b.url, '/v1/channels');
  return res.body.channels.map((c) => c.channelId);
}

/** Reads the channel's token on `b` every 100 ms until `untilMs` (epoch); every answer must be a valid token. */
async function readUntil(b: TestBroker, channelId: string, untilMs: number): Promise<number> {
  let reads = 0;
  while (Date.now() < untilMs) {
    const res = await api<TokenBody>(b.url, `/v1/channels/${channelId}/token`);
    expect(res.status).toBe(200);
    expect(fx.sim.checkToken('channel', channelId, res.body.channelToken).valid).toBe(true);
    reads += 1;
    await sleep(100);
  }
  return reads;
}

async function metric(b: TestBroker, name: string, labels: Record<string, string>): Promise<number> {
  const found = (await b.app.metrics.registry.getSingleMetric(name)?.get())?.values.find((v) =>
    Object.entries(labels).every(([k, value]) => v.labels[k] === value),
  );
  return found?.value ?? 0;
}

describe('on-demand and pinned channels', () => {
  it('when a channel made warm by a read is read on two replicas and then not at all, then it is refreshed while read and leaves after the idle time; pinned channels never leave', async () => {
    const prefix = uniquePrefix();
    const a = await broker({ BROKER_REDIS_PREFIX: prefix, BROKER_CHANNELS: '1000003' });
    const b = await broker({ BROKER_REDIS_PREFIX: prefix, BROKER_ROLE: 'api' });
    const appId = a.app.accounts.defaultAccount.appId;
    expect((await api(a.url, '/v1/channels/1000002', { method: 'PUT' })).status).toBe(200);

    // A cold read makes 1000001 warm on demand.
    await readUntil(a, '1000001', Date.now() + 300);
    expect(await state(a, '1000001')).toMatchObject({ warm: 'on-demand', warmFrom: null, warmUntil: null });
    // Read on replica A for a while, then only on replica B for longer than the idle time.
    await readUntil(a, '1000001', Date.now() + 2000);
    const bFrom = Date.now();
    await readUntil(b, '1000001', bFrom + IDLE_MS + CYCLE_MS + 1000);
    const stoppedAt = Date.now();
    const whileRead = callTimes('1000001');
    expect(whileRead.filter((t) => t > bFrom).length, 'refreshed while read on B only').toBeGreaterThanOrEqual(2);
    const readState = await state(a, '1000001');
    expect(readState.warm, 'reads on B keep it warm').toBe('on-demand');
    expect(readState.lastReadAt).toBeGreaterThan(stoppedAt - 1000);

    // No read any more: it leaves within the idle time, its grace and one refresh cycle.
    await eventually(async () => (await state(a, '1000001')).warm === false, IDLE_MS + GRACE_MS + CYCLE_MS + 2000, 100);
    const leftAt = Date.now();
    expect(leftAt - stoppedAt).toBeGreaterThanOrEqual(IDLE_MS);
    expect(await listed(a)).not.toContain('1000001');
    const callsAtLeave = callTimes('1000001').length;
    expect(callTimes('1000001').filter((t) => t > stoppedAt + IDLE_MS + GRACE_MS + CYCLE_MS), 'no call after idle time + one cycle').toEqual([]);
    await sleep(2 * CYCLE_MS);
    expect(callTimes('1000001').length, 'no PolyV call once it has left').toBe(callsAtLeave);
    expect(await metric(a, 'polyv_broker_warm_left_total', { reason: 'idle' })).toBe(1);

    // Pinned channels (PUT, BROKER_CHANNELS), never read, stayed warm and kept being refreshed all along.
    for (const ch of ['1000002', '1000003']) {
      expect((await state(a, ch)).warm, ch).toBe('pinned');
      expect(callTimes(ch).length, ch).toBeGreaterThanOrEqual(5);
    }
    expect(await listed(b)).toEqual(['1000002', '1000003']);
    // The next read after the token expired is a cold miss, which makes the channel warm again.
    await readUntil(b, '1000001', Date.now() + 100);
    expect((await state(b, '1000001')).warm).toBe('on-demand');
    await b.app.reads.flush();
    expect((await b.app.store.readStatus(appId, '1000001')).lastReadAt).toBeGreaterThan(leftAt);
  }, 60_000);

  it('when on-call refreshes a channel that is not warm, then it is warm on demand and idles out like one a read made warm', async () => {
    const a = await broker({});
    const joinedAt = Date.now();
    await a.app.service.forceRefresh(a.app.accounts.defaultAccount, '1000005');
    const joined = await state(a, '1000005');
    expect(joined.warm).toBe('on-demand');
    expect(joined.lastReadAt).toBeGreaterThanOrEqual(joinedAt);
    // Its scheduled refreshes do not keep it warm: it leaves after the idle time.
    await eventually(async () => (await state(a, '1000005')).warm === false, IDLE_MS + GRACE_MS + CYCLE_MS + 2000, 100);
    expect(Date.now() - joinedAt).toBeGreaterThanOrEqual(IDLE_MS);
  }, 20_000);

  it('when BROKER_IDLE_CHANNEL_SECONDS is 0, then an on-demand channel never idles out', async () => {
    const a = await broker({ BROKER_IDLE_CHANNEL_SECONDS: '0' });
    await readUntil(a, '1000004', Date.now() + 200);
    const first = callTimes('1000004').length;
    await sleep(2 * CYCLE_MS + 500);
    expect((await state(a, '1000004')).warm).toBe('on-demand');
    expect(callTimes('1000004').length).toBeGreaterThanOrEqual(first + 2);
  }, 20_000);
});

describe('warm windows', () => {
  it('when a window is set, then the first token is fetched just before warmFrom (surviving a restart of every replica), refreshed until warmUntil, and the channel leaves then', async () => {
    const prefix = uniquePrefix();
    const t0 = Date.now();
    const warmFrom = t0 + 6000;
    const warmUntil = t0 + 13_000;
    const first = await broker({ BROKER_REDIS_PREFIX: prefix });
    const put = await api<ChannelState>(first.url, '/v1/channels/2000001', { method: 'PUT', body: { warmFrom, warmUntil } });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ warm: false, warmFrom, warmUntil, expireTime: null });
    expect(await listed(first)).toEqual(['2000001']);
    expect(await first.app.metrics.registry.metrics()).toMatch(/polyv_broker_warm_channels_by_mode\{mode="window"\} 1\n/);
    // Every replica restarts before the window opens: the window lives in Redis.
    await first.stop();
    const b = await broker({ BROKER_REDIS_PREFIX: prefix });
    expect((await state(b, '2000001')).nextRefreshAt).toBe(warmFrom - 3000);

    // First fetch shortly before warmFrom (its lead is BROKER_REFRESH_BEFORE_SECONDS), not earlier, and before
    // warmFrom whatever the load on the machine (the sweep runs every 250 ms).
    const fetchedAt = await eventually(async () => callTimes('2000001')[0], 8000, 20);
    expect(fetchedAt).toBeGreaterThanOrEqual(warmFrom - 3000);
    expect(fetchedAt).toBeLessThan(warmFrom);
    expect((await state(b, '2000001')).warm).toBe('pinned');
    // The first viewer read at warmFrom is a hit: no PolyV call for it.
    await sleep(warmFrom - Date.now());
    const before = callTimes('2000001').length;
    await readUntil(b, '2000001', Date.now() + 50);
    expect(callTimes('2000001').length).toBe(before);

    // Refreshed until warmUntil, then out of the warm set, with no call after.
    await eventually(async () => !(await listed(b)).includes('2000001'), warmUntil - Date.now() + 2000, 100);
    expect(Date.now()).toBeGreaterThanOrEqual(warmUntil);
    const times = callTimes('2000001');
    expect(times.length, 'refreshed inside the window').toBeGreaterThanOrEqual(3);
    expect(times.filter((t) => t >= warmUntil)).toEqual([]);
    await sleep(CYCLE_MS + 500);
    expect(callTimes('2000001')).toEqual(times);
    expect(await metric(b, 'polyv_broker_warm_left_total', { reason: 'window_ended' })).toBe(1);
  }, 40_000);

  it('when the window body is bad, then 400 and nothing changes', async () => {
    const a = await broker({ BROKER_ROLE: 'api' });
    const now = Date.now();
    for (const body of [
      { warmFrom: now + 10_000, warmUntil: now + 5000 },
      { warmUntil: now - 1000 },
      { warmFrom: Math.floor(now / 1000) },
      { warmFrom: 'soon' },
      { warmFrom: now, other: 1 },
    ]) {
      const res = await api<{ error: { code: string; message: string } }>(a.url, '/v1/channels/2000002', { method: 'PUT', body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    // A window sent as plain text would otherwise be ignored, and the channel pinned for good.
    const text = await api<{ error: { code: string } }>(a.url, '/v1/channels/2000002', {
      method: 'PUT',
      rawBody: JSON.stringify({ warmUntil: now + 60_000 }),
      headers: { 'content-type': 'text/plain' },
    });
    expect(text.status).toBe(415);
    expect(text.body.error.code).toBe('unsupported_media_type');
    expect(await listed(a)).toEqual([]);
    expect(fx.sim.calls()).toEqual([]);
  });

  it('when a pinned channel gets a window, then it follows the window; a PUT without a body pins it again', async () => {
    const a = await broker({ BROKER_ROLE: 'api' });
    await api(a.url, '/v1/channels/2000003', { method: 'PUT' });
    const warmUntil = Date.now() + 60_000;
    const windowed = await api<ChannelState>(a.url, '/v1/channels/2000003', { method: 'PUT', body: { warmUntil } });
    expect(windowed.body).toMatchObject({ warm: 'pinned', warmFrom: null, warmUntil });
    const pinned = await api<ChannelState>(a.url, '/v1/channels/2000003', { method: 'PUT' });
    expect(pinned.body).toMatchObject({ warm: 'pinned', warmFrom: null, warmUntil: null });
  });
});

describe('capacity', () => {
  afterEach(() => fx.sim.setFault(null));

  it('when a new on-demand channel would take scheduled refreshes past the fleet-wide limit, then the read is served but the channel is not made warm', async () => {
    // Hour-long tokens and 2 calls per 10 s for the fleet: 720 calls an hour carry 657 warm channels.
    const logs = new LogCapture('info');
    const a = await broker(
      { BROKER_ROLE: 'api', BROKER_TOKEN_EXPIRE_SECONDS: '3600', BROKER_REFRESH_BEFORE_SECONDS: '300', BROKER_GLOBAL_LIMIT_PER_10S: '2' },
      { logger: logs.logger },
    );
    const appId = a.app.accounts.defaultAccount.appId;
    expect(a.app.capacity.figures.capacityChannels).toBe(657);
    // 656 channels already warm (another replica made them so).
    for (let i = 0; i < 656; i += 1) await a.app.warmSet.addIfAbsent(appId, String(9_000_000 + i), Date.now() + 3_000_000);

    const admitted = await api<TokenBody>(a.url, '/v1/channels/1000001/token');
    expect(admitted.status).toBe(200);
    expect((await state(a, '1000001')).warm).toBe('on-demand');

    const refused = await api<TokenBody>(a.url, '/v1/channels/1000002/token');
    expect(refused.status).toBe(200);
    expect(fx.sim.checkToken('channel', '1000002', refused.body.channelToken).valid).toBe(true);
    expect((await state(a, '1000002')).warm).toBe(false);
    expect(await metric(a, 'polyv_broker_warm_refused_total', { reason: 'capacity' })).toBe(1);
    // Pinning is on-call's decision: still allowed.
    expect((await api<ChannelState>(a.url, '/v1/channels/1000002', { method: 'PUT' })).body.warm).toBe('pinned');

    await a.app.capacity.recount();
    expect(logs.text).toContain('scheduled refreshes of the warm set exceed 80 % of the fleet-wide PolyV limit');
    const exposition = await a.app.metrics.registry.metrics();
    expect(exposition).toContain('polyv_broker_warm_capacity_channels 657');
    const ratio = Number(/polyv_broker_warm_capacity_ratio ([\d.]+)/.exec(exposition)?.[1]);
    expect(ratio).toBeGreaterThan(1);
    expect(exposition).toMatch(/polyv_broker_warm_channels_by_mode\{mode="on-demand"\} 657/);
    expect(exposition).toMatch(/polyv_broker_warm_channels_by_mode\{mode="pinned"\} 1/);
  });
});
