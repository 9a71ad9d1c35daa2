import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisKeys } from '../src/store/redis-keys.js';
import { TokenStore } from '../src/store/token-store.js';
import { TEST_ACCOUNT, TEST_KEY, api, eventually, redisUrl, testConfig, uniquePrefix, useSimulator, type TestBroker, type TokenBody } from './support/harness.js';
import { responseProblem } from './support/openapi-check.js';
import { SseStream, tokenOf, type SseEvent } from './support/sse.js';

/**
 * The token streams (Server-Sent Events) on in-process replicas sharing one real Redis: what a consumer
 * sees first, what reaches it when another replica writes, DELETE, resuming with Last-Event-ID, the
 * multiplexed form, the same refusals as the read, the limits (open streams, slow readers) and shutdown.
 * Real processes (latency, 2000 streams, restarts) are in token-stream-processes.test.ts.
 */

const fx = useSimulator({ invalidatePreviousChannelToken: false });
const dir = mkdtempSync(join(tmpdir(), 'ptb-stream-'));
const SCOPED_KEY = 'stream-scoped-key-0123456789';
let redis: Redis;

beforeAll(() => {
  redis = new Redis(redisUrl());
});
afterAll(async () => {
  await redis.quit();
  rmSync(dir, { recursive: true, force: true });
});

/** Replicas sharing one key prefix (one fleet); a consumer scoped to channel 1000002 besides the env keys. */
async function fleet(count: number, env: Record<string, string> = {}): Promise<TestBroker[]> {
  const file = join(dir, `consumers-${uniquePrefix()}.yaml`);
  writeFileSync(file, `consumers:\n  - name: one-channel\n    key: "${SCOPED_KEY}"\n    channels: ["1000002"]\n`);
  const shared = { BROKER_ROLE: 'api', BROKER_REDIS_PREFIX: uniquePrefix(), BROKER_CONFIG_FILE: file, ...env };
  return Promise.all(Array.from({ length: count }, () => fx.broker(testConfig(fx.sim.url, shared))));
}

/** Opens a stream; every answer is checked against the OpenAPI description, as `api()` checks the others. */
async function open(b: TestBroker, path: string, options: { key?: string | null; lastEventId?: string } = {}): Promise<SseStream> {
  const s = await SseStream.open(`${b.url}${path}`, { key: options.key === undefined ? TEST_KEY : options.key, ...(options.lastEventId === undefined ? {} : { lastEventId: options.lastEventId }) });
  if (s.status !== 200) await s.closed;
  const problem = responseProblem('GET', path, s.status, s.status === 200 ? undefined : JSON.parse(s.body));
  if (problem !== undefined) throw new Error(`the answer breaks the OpenAPI description: ${problem}`);
  return s;
}

const tokens = (s: SseStream) => s.named('token');
const last = (events: readonly SseEvent[]): SseEvent => {
  const e = events.at(-1);
  if (e === undefined) throw new Error('no event');
  return e;
};

/** Makes a replica write a new token for the channel: a report of the current one (compare-and-refresh). */
async function replaceToken(b: TestBroker, channelId: string): Promise<TokenBody> {
  const current = await api<TokenBody>(b.url, `/v1/channels/${channelId}/token`);
  const res = await api<TokenBody>(b.url, `/v1/channels/${channelId}/token/refresh`, { method: 'POST', body: { rejectedToken: current.body.channelToken } });
  expect(res.status).toBe(200);
  expect(res.body.channelToken).not.toBe(current.body.channelToken);
  return res.body;
}

async function metricValue(b: TestBroker, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await b.app.metrics.registry.getSingleMetric(name)?.get();
  const match = metric?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return match?.value ?? 0;
}

describe('a channel token stream', () => {
  it('when a consumer opens it, then the first event is the current token as GET gives it, and a write on another replica follows at once', async () => {
    const [a, b] = await fleet(2);
    const s = await open(a!, '/v1/channels/1000001/token/stream');
    expect(s.status).toBe(200);
    expect(s.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(s.headers['cache-control']).toBe('no-store');
    const [first] = await s.waitForEvents(1);
    expect(first!.event).toBe('token');
    const read = await api<TokenBody>(a!.url, '/v1/channels/1000001/token');
    expect(JSON.parse(first!.data)).toEqual(read.body);
    expect(first!.id).toMatch(/^\d+$/);
    expect(s.retryMs).toBeGreaterThan(0);

    const written = await replaceToken(b!, '1000001');
    await s.waitForEvents(2);
    const second = s.events[1]!;
    expect(second.event).toBe('token');
    expect(tokenOf(second)).toEqual(written);
    expect(Number(second.id)).toBeGreaterThan(Number(first!.id));
    expect(fx.sim.checkToken('channel', '1000001', written.channelToken).valid).toBe(true);
    // The replica that serves the stream serves the new token from then on.
    expect((await api<TokenBody>(a!.url, '/v1/channels/1000001/token')).body).toEqual(written);
    s.close();
  });

  it('when the channel is deleted on another replica, then a forgotten event follows, and the next token after it', async () => {
    const [a, b] = await fleet(2);
    const s = await open(a!, '/v1/channels/1000003/token/stream');
    await s.waitForEvents(1);
    expect((await api(b!.url, '/v1/channels/1000003', { method: 'DELETE' })).status).toBe(204);
    await s.waitForEvents(2);
    expect(s.events[1]).toMatchObject({ event: 'forgotten', id: '', data: JSON.stringify({ channelId: '1000003' }) });
    const fresh = await api<TokenBody>(b!.url, '/v1/channels/1000003/token');
    await s.waitForEvents(3);
    expect(s.events[2]!.event).toBe('token');
    expect(tokenOf(s.events[2]!)).toEqual(fresh.body);
    s.close();
  });

  it('when a consumer reconnects with Last-Event-ID, then what it holds is not sent again, and what is newer is', async () => {
    const [a, b] = await fleet(2);
    const s1 = await open(a!, '/v1/channels/1000004/token/stream');
    const [first] = await s1.waitForEvents(1);
    s1.close();
    // Resuming on the other replica with the version it holds: nothing is sent, until a new token is written.
    const s2 = await open(b!, '/v1/channels/1000004/token/stream', { lastEventId: first!.id! });
    expect(s2.status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect(s2.events).toEqual([]);
    const written = await replaceToken(a!, '1000004');
    await s2.waitForEvents(1);
    expect(tokenOf(s2.events[0]!)).toEqual(written);
    s2.close();
    // A client holding an older version gets the current token at once; an unreadable ID counts as nothing held.
    for (const lastEventId of [first!.id!, 'not-a-version']) {
      const s3 = await open(b!, '/v1/channels/1000004/token/stream', { lastEventId });
      const [e] = await s3.waitForEvents(1);
      expect(tokenOf(e!)).toEqual(written);
      s3.close();
    }
  });

  it('when the stored token has less than the minimum TTL left, then the stream never carries it: the first event is a fresh token', async () => {
    // Tokens live 6 s and are never served with less than 2 s left; no worker refreshes them (api replica).
    const [a] = await fleet(1, { BROKER_TOKEN_EXPIRE_SECONDS: '6', BROKER_REFRESH_BEFORE_SECONDS: '3', BROKER_MIN_TTL_SECONDS: '2' });
    const appId = TEST_ACCOUNT.appId;
    const first = await api<TokenBody>(a!.url, '/v1/channels/1000005/token');
    await new Promise((r) => setTimeout(r, Math.max(0, first.body.expireTime - 1900 - Date.now())));

    const s = await open(a!, '/v1/channels/1000005/token/stream');
    const [e] = await s.waitForEvents(1);
    expect(tokenOf(e!).channelToken).not.toBe(first.body.channelToken);
    expect(tokenOf(e!).expireTime - e!.at).toBeGreaterThanOrEqual(2000);
    // A write of a token with too little life left is not sent; the next good one is.
    const store = new TokenStore({ redis, keys: new RedisKeys(a!.app.config.redisPrefix) });
    const v = Number(e!.id);
    await store.write(appId, '1000005', { token: 'low-ttl-token', expireTime: Date.now() + 1000, version: v + 1, fetchedAt: Date.now() });
    await store.write(appId, '1000005', { token: 'good-token', expireTime: Date.now() + 3_000_000, version: v + 2, fetchedAt: Date.now() });
    await s.waitForEvents(2);
    await new Promise((r) => setTimeout(r, 200));
    expect(s.events.map((x) => [x.id, tokenOf(x).channelToken])).toEqual([
      [String(v), tokenOf(e!).channelToken],
      [String(v + 2), 'good-token'],
    ]);
    s.close();
  });
});

describe('the multiplexed stream', () => {
  it('when a service follows several channels, then it gets each current token, each new one, and resumes from one Last-Event-ID', async () => {
    const [a, b] = await fleet(2);
    const s = await open(a!, '/v1/token-stream?channels=1000001,1000002,1000001');
    await s.waitForEvents(2);
    expect(s.events.map((e) => [e.event, tokenOf(e).channelId])).toEqual([
      ['token', '1000001'],
      ['token', '1000002'],
    ]);
    const [v1, v2] = [await a!.app.store.read(TEST_ACCOUNT.appId, '1000001'), await a!.app.store.read(TEST_ACCOUNT.appId, '1000002')];
    expect(last(s.events).id).toBe(`1000001:${v1!.version},1000002:${v2!.version}`);

    const written = await replaceToken(b!, '1000002');
    await s.waitForEvents(3);
    expect(tokenOf(s.events[2]!)).toEqual(written);
    const resumeFrom = s.events[2]!.id!;
    const v2new = (await a!.app.store.read(TEST_ACCOUNT.appId, '1000002'))!.version;
    expect(v2new).toBeGreaterThan(v2!.version);
    expect(resumeFrom).toBe(`1000001:${v1!.version},1000002:${v2new}`);
    s.close();

    // Resumed on the other replica: nothing it holds is sent again; a channel added since is.
    const s2 = await open(b!, '/v1/accounts/default/token-stream?channels=1000001,1000002,1000003', { lastEventId: resumeFrom });
    await s2.waitForEvents(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(s2.events.map((e) => tokenOf(e).channelId)).toEqual(['1000003']);
    s2.close();
  });

  it('when one channel has no token to give, then it gets an unavailable event and the others stream as usual', async () => {
    const [a] = await fleet(1);
    const s = await open(a!, '/v1/token-stream?channels=1000001,9999999');
    await s.waitForEvents(2);
    const unavailable = s.named('unavailable');
    expect(unavailable).toHaveLength(1);
    expect(JSON.parse(unavailable[0]!.data)).toEqual({ channelId: '9999999', error: { code: 'channel_not_in_account', message: expect.any(String) } });
    expect(tokens(s).map((e) => tokenOf(e).channelId)).toEqual(['1000001']);
    s.close();
    // The channel's own stream answers as GET .../token does.
    const single = await open(a!, '/v1/channels/9999999/token/stream');
    expect(single.status).toBe(404);
    expect(JSON.parse(single.body)).toMatchObject({ error: { code: 'channel_not_in_account' } });
  });
});

describe('refusals: the same as the read', () => {
  it('when the key, the channel, the account, the scope or the channel list is wrong, then the JSON error of GET .../token, and no stream', async () => {
    const [a] = await fleet(1);
    const cases: Array<[string, string | null, number, string]> = [
      ['/v1/channels/1000001/token/stream', null, 401, 'unauthorized'],
      ['/v1/channels/1000001/token/stream', 'not-a-configured-key-0123', 401, 'unauthorized'],
      ['/v1/channels/abc/token/stream', TEST_KEY, 400, 'invalid_channel_id'],
      ['/v1/accounts/nobody/channels/1000001/token/stream', TEST_KEY, 404, 'not_found'],
      ['/v1/channels/1000001/token/stream', SCOPED_KEY, 403, 'forbidden'],
      ['/v1/token-stream?channels=1000002,1000001', SCOPED_KEY, 403, 'forbidden'],
      ['/v1/token-stream', TEST_KEY, 400, 'invalid_request'],
      ['/v1/token-stream?channels=', TEST_KEY, 400, 'invalid_request'],
      ['/v1/token-stream?channels=1000001&channels=1000002', TEST_KEY, 400, 'invalid_request'],
      ['/v1/token-stream?channels=1000001,x', TEST_KEY, 400, 'invalid_channel_id'],
      [`/v1/token-stream?channels=${Array.from({ length: 101 }, (_, i) => 1000000 + i).join(',')}`, TEST_KEY, 400, 'invalid_request'],
    ];
    for (const [path, key, status, code] of cases) {
      const s = await open(a!, path, { key });
      expect([path, key, s.status]).toEqual([path, key, status]);
      await s.closed;
      expect(JSON.parse(s.body)).toMatchObject({ error: { code } });
    }
    const allowed = await open(a!, '/v1/token-stream?channels=1000002', { key: SCOPED_KEY });
    expect(allowed.status).toBe(200);
    allowed.close();
    expect(fx.sim.calls({ endpoint: 'get-channel-token', channelId: '1000001' })).toHaveLength(0);
  });

  it('when a consumer is over its rate limit, then opening a stream is 429 like any request', async () => {
    const [a] = await fleet(1, { BROKER_RATE_LIMIT_PER_SECOND: '1', BROKER_RATE_LIMIT_BURST: '1' });
    const s1 = await open(a!, '/v1/channels/1000001/token/stream');
    expect(s1.status).toBe(200);
    const s2 = await open(a!, '/v1/channels/1000001/token/stream');
    expect(s2.status).toBe(429);
    expect(Number(s2.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    s1.close();
  });
});

describe('bounded resources', () => {
  it('when BROKER_STREAM_MAX_CLIENTS streams are open, then one more is 503 with Retry-After, and a closed one frees its place; the gauge counts them', async () => {
    const [a] = await fleet(1, { BROKER_STREAM_MAX_CLIENTS: '2' });
    const s1 = await open(a!, '/v1/channels/1000001/token/stream');
    const s2 = await open(a!, '/v1/token-stream?channels=1000001,1000002');
    await Promise.all([s1.waitForEvents(1), s2.waitForEvents(2)]);
    expect(await metricValue(a!, 'polyv_broker_streams_open')).toBe(2);
    const s3 = await open(a!, '/v1/channels/1000001/token/stream');
    expect(s3.status).toBe(503);
    expect(Number(s3.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    await s3.closed;
    expect(JSON.parse(s3.body)).toMatchObject({ error: { code: 'too_many_streams' } });
    // A plain read is not limited by the streams.
    expect((await api(a!.url, '/v1/channels/1000001/token')).status).toBe(200);
    s1.close();
    await eventually(async () => (await metricValue(a!, 'polyv_broker_streams_open')) === 1);
    const s4 = await open(a!, '/v1/channels/1000001/token/stream');
    expect(s4.status).toBe(200);
    expect(await metricValue(a!, 'polyv_broker_stream_events_sent_total', { event: 'token' })).toBeGreaterThanOrEqual(3);
    s2.close();
    s4.close();
  });

  it('when a reader stops reading while tokens keep coming, then its stream alone is dropped and the others get every latest token', async () => {
    const [a] = await fleet(1);
    const appId = TEST_ACCOUNT.appId;
    const fast = await Promise.all([0, 1, 2].map(() => open(a!, '/v1/channels/2000001/token/stream')));
    const slow = await open(a!, '/v1/channels/2000001/token/stream');
    const other = await open(a!, '/v1/channels/2000002/token/stream');
    await Promise.all([...fast, slow, other].map((s) => s.waitForEvents(1)));
    slow.pause();
    // A writer elsewhere (the test, through the broker's own store code) writes large tokens quickly.
    const store = new TokenStore({ redis, keys: new RedisKeys(a!.app.config.redisPrefix) });
    const base = (await a!.app.store.read(appId, '2000001'))!.version;
    const padding = 'x'.repeat(16 * 1024);
    let version = base;
    const deadline = Date.now() + 20_000;
    while ((await metricValue(a!, 'polyv_broker_stream_slow_reader_drops_total')) === 0 && Date.now() < deadline) {
      for (let i = 0; i < 50; i++) {
        version += 1;
        await store.write(appId, '2000001', { token: `${version}-${padding}`, expireTime: Date.now() + 3_000_000, version, fetchedAt: Date.now() });
      }
    }
    expect(await metricValue(a!, 'polyv_broker_stream_slow_reader_drops_total')).toBe(1);
    for (const s of fast) {
      await s.waitFor(() => last(s.events).id === String(version), 10_000, `version ${version}`);
      const ids = s.events.map((e) => Number(e.id));
      expect(ids).toEqual([...ids].sort((x, y) => x - y));
      expect(new Set(ids).size).toBe(ids.length);
      expect(s.isClosed).toBe(false);
    }
    expect(other.isClosed).toBe(false);
    slow.resume();
    expect(await slow.closed).toBe('aborted');
    await eventually(async () => (await metricValue(a!, 'polyv_broker_streams_open')) === 4);
    for (const s of [...fast, other]) s.close();
  });

  it('when the replica stops, then every stream ends cleanly at once and a new one is refused', async () => {
    const [a] = await fleet(1);
    const streams = await Promise.all([open(a!, '/v1/channels/1000001/token/stream'), open(a!, '/v1/token-stream?channels=1000001,1000002')]);
    await Promise.all([streams[0].waitForEvents(1), streams[1].waitForEvents(2)]);
    const started = Date.now();
    await a!.stop();
    const stopMs = Date.now() - started;
    expect(await Promise.all(streams.map((s) => s.closed))).toEqual(['ended', 'ended']);
    // Without ending them, closing the listener would wait for them for half of BROKER_SHUTDOWN_TIMEOUT_MS (5 s).
    expect(stopMs).toBeLessThan(4000);
    await expect(open(a!, '/v1/channels/1000001/token/stream')).rejects.toThrow();
  });
});
