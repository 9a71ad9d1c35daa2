import { afterEach, describe, expect, it } from 'vitest';
import { BrokerClientError, type ChannelToken } from '../client/src/broker-client.js';
import { TEST_KEY, api, eventually, testConfig, uniquePrefix, useSimulator, type TestBroker, type TokenBody } from './support/harness.js';
import { clientFactory } from './support/client-fixture.js';

/**
 * The Node client on the token streams, against in-process replicas sharing one Redis: `subscribe`, the
 * cache kept current from the stream (`stream: true`), and polling while the stream is refused. A broker
 * restart under a subscription is in token-stream-processes.test.ts (real processes).
 */


const fx = useSimulator({ invalidatePreviousChannelToken: false });
const cleanups: Array<() => Promise<void>> = [];
const clientOf = clientFactory(cleanups);
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fleet(count: number, env: Record<string, string> = {}): Promise<TestBroker[]> {
  const shared = { BROKER_ROLE: 'api', BROKER_REDIS_PREFIX: uniquePrefix(), ...env };
  return Promise.all(Array.from({ length: count }, () => fx.broker(testConfig(fx.sim.url, shared))));
}


async function replaceToken(b: TestBroker, channelId: string): Promise<TokenBody> {
  const current = await api<TokenBody>(b.url, `/v1/channels/${channelId}/token`);
  const res = await api<TokenBody>(b.url, `/v1/channels/${channelId}/token/refresh`, { method: 'POST', body: { rejectedToken: current.body.channelToken } });
  expect(res.status).toBe(200);
  return res.body;
}

describe('BrokerClient.subscribe', () => {
  it('when a service subscribes, then onToken gets the current token, then each new one written on any replica, never one twice', async () => {
    const [a, b] = await fleet(2);
    const { client } = clientOf(a!);
    const seen: ChannelToken[] = [];
    const errors: unknown[] = [];
    const sub = client.subscribe('1000001', (t) => seen.push(t), { onError: (e) => errors.push(e) });
    await eventually(async () => seen.length === 1);
    const current = await api<TokenBody>(a!.url, '/v1/channels/1000001/token');
    expect(seen[0]).toEqual(current.body);

    const second = await replaceToken(b!, '1000001');
    await eventually(async () => seen.length === 2);
    const third = await replaceToken(b!, '1000001');
    await eventually(async () => seen.length === 3);
    expect(seen.slice(1)).toEqual([second, third]);
    // A second subscriber of the channel gets the current token at once (from the cache), and only it.
    const other: ChannelToken[] = [];
    const sub2 = client.subscribe('1000001', (t) => other.push(t));
    await eventually(async () => other.length === 1);
    expect(other).toEqual([third]);
    sub.close();
    const fourth = await replaceToken(b!, '1000001');
    await eventually(async () => other.length === 2);
    expect(other[1]).toEqual(fourth);
    expect(seen).toHaveLength(3);
    expect(new Set(seen.map((t) => t.channelToken)).size).toBe(3);
    expect(errors).toEqual([]);
    sub2.close();
  });

  it('when the stream is refused (streams off on the replica), then the subscription polls and still hears the new token', async () => {
    const [a, b] = await fleet(2, { BROKER_STREAM_MAX_CLIENTS: '0' });
    const { client } = clientOf(a!, { pollIntervalMs: 300 });
    const seen: ChannelToken[] = [];
    const errors: unknown[] = [];
    const sub = client.subscribe('1000002', (t) => seen.push(t), { onError: (e) => errors.push(e) });
    await eventually(async () => seen.length === 1, 5000);
    const replaced = await replaceToken(b!, '1000002');
    await eventually(async () => seen.length === 2, 5000);
    expect(seen[1]).toEqual(replaced);
    const refused = errors.find((e): e is BrokerClientError => e instanceof BrokerClientError && e.status === 404);
    expect(refused?.code).toBe('not_found');
    expect(refused?.message).not.toContain(TEST_KEY);
    sub.close();
  });
});

describe('BrokerClient with stream: true', () => {
  it('when the broker writes a new token, then the cache holds it as soon as the event arrives: withChannelToken uses it without a request', async () => {
    const [a, b] = await fleet(2);
    const { client, agent } = clientOf(a!, { stream: true });
    const first = await client.getChannelToken('1000003');
    await eventually(async () => agent.requests.some((r) => r.startsWith('GET /v1/token-stream?channels=1000003')));
    // Let the stream tell the current token (the same one) before replacing it.
    await new Promise((r) => setTimeout(r, 200));
    const replaced = await replaceToken(b!, '1000003');
    expect(replaced.channelToken).not.toBe(first.channelToken);
    await eventually(async () => (await client.getChannelToken('1000003')).channelToken === replaced.channelToken, 5000, 10);
    const before = agent.requests.length;
    const used = await client.withChannelToken('1000003', (token) => token);
    expect(used).toBe(replaced.channelToken);
    expect(agent.requests.slice(before)).toEqual([]);
    // One stream for every channel read: a second channel joins it (the stream reconnects with both).
    await client.getChannelToken('1000004');
    await eventually(async () => agent.requests.some((r) => r.startsWith('GET /v1/token-stream?channels=1000003,1000004')));
    const replaced4 = await replaceToken(b!, '1000004');
    await eventually(async () => (await client.getChannelToken('1000004')).channelToken === replaced4.channelToken, 5000, 10);
    // DELETE: the cached token is dropped, the next read asks the broker.
    expect((await api(b!.url, '/v1/channels/1000004', { method: 'DELETE' })).status).toBe(204);
    await eventually(async () => {
      const n = agent.requests.length;
      await client.getChannelToken('1000004');
      return agent.requests.slice(n).includes('GET /v1/channels/1000004/token');
    }, 5000);
  });
});
