import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  BrokerClient,
  BrokerClientError,
  isInvalidTokenResponse,
  type BrokerClientOptions,
} from '../client/src/broker-client.js';
import { ManualClock } from '../src/lib/clock.js';
import type { PolyvSimulator } from '../src/sim/polyv-simulator.js';
import { OTHER_KEY, TEST_KEY, startBroker, startSim, testConfig, type TestBroker } from './support/harness.js';
import { clientFactory } from './support/client-fixture.js';

/** PolyV's answer to a call made with an expired or replaced channel token. */
const INVALID_TOKEN = { code: 15, status: 'error', message: 'invalid token.', data: null } as const;
const WRONG_KEY = 'wrong-consumer-key-0123456789';


let sim: PolyvSimulator;
const brokers: TestBroker[] = [];
const cleanups: Array<() => Promise<void>> = [];
const clientOf = clientFactory(cleanups);

async function broker(env: Record<string, string> = {}): Promise<TestBroker> {
  const b = await startBroker(testConfig(sim.url, { BROKER_ROLE: 'api', ...env }));
  brokers.push(b);
  return b;
}


/** `polyv_broker_tokens_served_total{kind="channel"}`, optionally of one outcome: requests the broker answered. */
async function served(b: TestBroker, outcome?: string): Promise<number> {
  const { values } = await b.app.metrics.tokensServed.get();
  return values
    .filter((v) => v.labels.kind === 'channel' && (outcome === undefined || v.labels.outcome === outcome))
    .reduce((sum, v) => sum + v.value, 0);
}

const channelCalls = (channelId: string) => sim.calls({ endpoint: 'get-channel-token', channelId }).length;

async function caught(promise: Promise<unknown>): Promise<BrokerClientError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BrokerClientError);
  return err as BrokerClientError;
}

beforeAll(async () => {
  sim = await startSim();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
  await Promise.all(brokers.splice(0).map((b) => b.stop()));
  sim.setFault(null);
  sim.resetCalls();
});
afterAll(async () => {
  await sim.close();
});

describe('BrokerClient.getChannelToken', () => {
  it('when a channel is asked for twice, then the second answer comes from memory without an HTTP request', async () => {
    const b = await broker();
    const { client, agent } = clientOf(b);

    const first = await client.getChannelToken('1000001');
    expect(first.channelId).toBe('1000001');
    expect(first.expireTime).toBeGreaterThan(Date.now() + 3500_000);
    expect(sim.checkToken('channel', '1000001', first.channelToken)).toEqual({ valid: true });

    const second = await client.getChannelToken('1000001');
    expect(second).toEqual(first);
    expect(agent.requests).toEqual(['GET /v1/channels/1000001/token']);
    expect(await served(b)).toBe(1);
  });

  it('when the broker goes away, then a cached token is still served and an uncached channel fails with network_error', async () => {
    const b = await broker();
    const { client } = clientOf(b);
    const cached = await client.getChannelToken('1000001');
    await brokers.splice(0)[0]!.stop();

    expect(await client.getChannelToken('1000001')).toEqual(cached);
    const err = await caught(client.getChannelToken('1000002'));
    expect(err.code).toBe('network_error');
    expect(err.status).toBeUndefined();
    expect(err.retryable).toBe(true);
    expect(err.channelId).toBe('1000002');
  });

  it('when 20 callers ask for a cold channel at once, then the broker gets one request and all get the same token', async () => {
    const b = await broker();
    const { client, agent } = clientOf(b);
    sim.setFault({ kind: 'latency', ms: 200 });

    const tokens = await Promise.all(Array.from({ length: 20 }, () => client.getChannelToken('1000002')));

    expect(new Set(tokens.map((t) => t.channelToken)).size).toBe(1);
    expect(await served(b)).toBe(1);
    expect(agent.requests).toHaveLength(1);
    expect(channelCalls('1000002')).toBe(1);
  });

  it('when the shared request fails, then every waiting caller gets the error, nothing is cached, and the next call asks again', async () => {
    const b = await broker();
    const { client, agent } = clientOf(b);
    sim.setFault({ kind: 'error-code', code: 500, message: '', times: 1 });

    const errors = await Promise.all(Array.from({ length: 5 }, () => caught(client.getChannelToken('1000003'))));
    expect(errors.map((e) => e.status)).toEqual([503, 503, 503, 503, 503]);
    expect(agent.requests).toHaveLength(1);
    expect(await served(b, 'unavailable')).toBe(1);

    const token = await client.getChannelToken('1000003');
    expect(sim.checkToken('channel', '1000003', token.channelToken)).toEqual({ valid: true });
    expect(agent.requests).toHaveLength(2);
  });

  it('when the injected clock reaches expireTime - refreshMarginMs, then the token is asked of the broker again', async () => {
    const b = await broker();
    const clock = new ManualClock(Date.now());
    const { client, agent } = clientOf(b, { clock, refreshMarginMs: 120_000 });
    const token = await client.getChannelToken('1000001');

    clock.set(token.expireTime - 120_000 - 1);
    expect(await client.getChannelToken('1000001')).toEqual(token);
    expect(agent.requests).toHaveLength(1);

    clock.advance(1);
    expect(await client.getChannelToken('1000001')).toEqual(token); // the broker's copy is still valid
    expect(agent.requests).toHaveLength(2);
    expect(await served(b, 'hit')).toBe(1);
  });

  it('when an account is given, then the per-account routes are used; an unknown account is not_found', async () => {
    const b = await broker();
    const { client, agent } = clientOf(b, { account: 'default' });
    const token = await client.getChannelToken('1000001');
    expect(sim.checkToken('channel', '1000001', token.channelToken)).toEqual({ valid: true });
    expect(agent.requests).toEqual(['GET /v1/accounts/default/channels/1000001/token']);

    const { client: other } = clientOf(b, { account: 'nope' });
    const err = await caught(other.getChannelToken('1000001'));
    expect(err).toMatchObject({ status: 404, code: 'not_found' });
  });

  it('when the channel ID is not 1-20 digits, then invalid_channel_id and no request is made', async () => {
    const b = await broker();
    const { client, agent } = clientOf(b);
    let fnCalls = 0;
    for (const bad of ['abc', '12a', '123456789012345678901', '', ' 1000001', '1000001/../x', '-1', '1.5']) {
      expect(await caught(client.getChannelToken(bad))).toMatchObject({ code: 'invalid_channel_id', status: undefined });
      expect(await caught(client.reportRejected(bad, 'some-token'))).toMatchObject({ code: 'invalid_channel_id' });
      expect(await caught(client.withChannelToken(bad, () => ++fnCalls))).toMatchObject({ code: 'invalid_channel_id' });
    }
    expect(fnCalls).toBe(0);
    expect(agent.requests).toEqual([]);
    expect(sim.calls()).toEqual([]);
  });

  it('when the client is closed, then calls fail with client_closed and the injected dispatcher stays open', async () => {
    const b = await broker();
    const { client, agent } = clientOf(b);
    await client.getChannelToken('1000001');
    await client.close();
    expect(await caught(client.getChannelToken('1000001'))).toMatchObject({ code: 'client_closed' });
    expect(agent.closed).toBe(false);
  });
});

describe('BrokerClient.withChannelToken', () => {
  it('when PolyV answers code 15 the first time, then the token is reported and fn runs once more with a new valid token', async () => {
    const b = await broker();
    const { client, agent } = clientOf(b);
    const seen: string[] = [];

    const result = await client.withChannelToken('1000001', async (token) => {
      seen.push(token);
      return seen.length === 1 ? INVALID_TOKEN : { code: 200, status: 'success', data: 'live' };
    });

    expect(result).toEqual({ code: 200, status: 'success', data: 'live' });
    expect(seen).toHaveLength(2);
    expect(seen[1]).not.toBe(seen[0]);
    expect(sim.checkToken('channel', '1000001', seen[1]!)).toEqual({ valid: true });
    expect(sim.checkToken('channel', '1000001', seen[0]!).valid).toBe(false);
    expect(channelCalls('1000001')).toBe(2);
    expect(agent.requests).toEqual(['GET /v1/channels/1000001/token', 'POST /v1/channels/1000001/token/refresh']);
    expect(await served(b, 'refresh')).toBe(1);

    // the new token replaced the cached one
    expect((await client.getChannelToken('1000001')).channelToken).toBe(seen[1]);
    expect(agent.requests).toHaveLength(2);
  });

  it('when fn throws an HTTP error carrying the code-15 body, then it is retried once with the new token', async () => {
    const b = await broker();
    const { client } = clientOf(b);
    const seen: string[] = [];

    const result = await client.withChannelToken('1000002', (token) => {
      seen.push(token);
      if (seen.length === 1) throw Object.assign(new Error('PolyV said no'), { statusCode: 200, body: JSON.stringify(INVALID_TOKEN) });
      return 'ok';
    });

    expect(result).toBe('ok');
    expect(seen).toHaveLength(2);
    expect(sim.checkToken('channel', '1000002', seen[1]!)).toEqual({ valid: true });
  });

  it('when the new token is rejected too, then the second rejection is returned as is, without another report', async () => {
    const b = await broker();
    const { client, agent } = clientOf(b);
    let runs = 0;

    const result = await client.withChannelToken('1000003', () => {
      runs += 1;
      return INVALID_TOKEN;
    });

    expect(result).toBe(INVALID_TOKEN);
    expect(runs).toBe(2);
    expect(agent.requests.filter((r) => r.startsWith('POST'))).toHaveLength(1);
    expect(channelCalls('1000003')).toBe(2);
  });

  it('when the new token is rejected by a throw too, then that error is thrown as is', async () => {
    const b = await broker();
    const { client } = clientOf(b);
    const errors = [new Error('first'), new Error('second')].map((e) => Object.assign(e, { cause: INVALID_TOKEN }));
    let runs = 0;

    const err = await client.withChannelToken('1000004', () => {
      throw errors[runs++]!;
    }).catch((e: unknown) => e);

    expect(err).toBe(errors[1]);
    expect(runs).toBe(2);
    expect(channelCalls('1000004')).toBe(2);
  });

  it('when fn fails for another reason, then the error is thrown without a report or a retry', async () => {
    const b = await broker();
    const { client, agent } = clientOf(b);
    const boom = Object.assign(new Error('boom'), { body: { code: 400, status: 'error', message: 'param validate error' } });
    let runs = 0;

    await expect(
      client.withChannelToken('1000005', () => {
        runs += 1;
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(await client.withChannelToken('1000005', () => ({ code: 200, data: { code: 15 } }))).toEqual({ code: 200, data: { code: 15 } });

    expect(runs).toBe(1);
    expect(agent.requests).toEqual(['GET /v1/channels/1000005/token']);
    expect(channelCalls('1000005')).toBe(1);
  });

  it('when 10 concurrent callers see the same token rejected, then one report is sent and all retry with the same new token', async () => {
    const b = await broker();
    const { client, agent } = clientOf(b);
    const old = await client.getChannelToken('2000001');

    const retriedWith = await Promise.all(
      Array.from({ length: 10 }, () =>
        client.withChannelToken('2000001', (token) => (token === old.channelToken ? INVALID_TOKEN : token)),
      ),
    );

    expect(new Set(retriedWith).size).toBe(1);
    expect(retriedWith[0]).not.toBe(old.channelToken);
    expect(sim.checkToken('channel', '2000001', retriedWith[0] as string)).toEqual({ valid: true });
    expect(agent.requests.filter((r) => r.startsWith('POST'))).toHaveLength(1);
    expect(channelCalls('2000001')).toBe(2);
  });
});

describe('BrokerClient errors', () => {
  it('when the API key is wrong, then BrokerClientError unauthorized (401) without the key in it', async () => {
    const b = await broker();
    const { client } = clientOf(b, { apiKey: WRONG_KEY });

    const err = await caught(client.getChannelToken('1000001'));

    expect(err).toMatchObject({ name: 'BrokerClientError', status: 401, code: 'unauthorized', retryAfterMs: undefined });
    expect(err.retryable).toBe(false);
    expect(inspect(err, { depth: 10 })).not.toContain(WRONG_KEY);
  });

  it('when the broker answers 503 with Retry-After, then retryAfterMs carries it and the rejected token leaves the cache', async () => {
    const b = await broker({ BROKER_CHANNEL_BUDGET_PER_HOUR: '1' });
    const { client, agent } = clientOf(b);
    const token = await client.getChannelToken('2000002');

    const err = await caught(client.reportRejected('2000002', token.channelToken));

    expect(err).toMatchObject({ status: 503, code: 'budget_exhausted' });
    expect(err.retryable).toBe(true);
    expect(err.retryAfterMs).toBeGreaterThan(3500_000);
    expect(err.retryAfterMs).toBeLessThanOrEqual(3601_000);
    expect(err.retryAfterMs! % 1000).toBe(0);

    await client.getChannelToken('2000002');
    expect(agent.requests).toHaveLength(3); // GET, POST, and GET again: the reported token was not served from memory
  });

  it('when PolyV is down for a cold channel, then 503 upstream_unavailable, retryable', async () => {
    const b = await broker();
    const { client } = clientOf(b);
    sim.setFault({ kind: 'http-status', status: 502 });

    const err = await caught(client.getChannelToken('2000003'));

    expect(err).toMatchObject({ status: 503, code: 'upstream_unavailable' });
    expect(err.retryable).toBe(true);
    // The broker does not send Retry-After on this 503 yet (README promises it on every 503); once it does,
    // assert `err.retryAfterMs` here too.
  });

  it('when the broker does not answer within timeoutMs, then BrokerClientError timeout', async () => {
    const b = await broker();
    const { client } = clientOf(b, { timeoutMs: 300 });
    sim.setFault({ kind: 'hang' });

    const started = Date.now();
    const err = await caught(client.getChannelToken('1000004'));

    expect(err).toMatchObject({ code: 'timeout', status: undefined });
    expect(Date.now() - started).toBeLessThan(1400);
  });

  it('whatever fails, then neither the API key nor a token appears in the error message or its inspection', async () => {
    const b = await broker({ BROKER_CHANNEL_BUDGET_PER_HOUR: '1' });
    const { client } = clientOf(b, { apiKey: OTHER_KEY, timeoutMs: 300 });
    const { client: wrongKey } = clientOf(b, { apiKey: WRONG_KEY });
    const token = await client.getChannelToken('1000001');

    const errors: BrokerClientError[] = [
      await caught(wrongKey.getChannelToken('1000001')),
      await caught(wrongKey.reportRejected('1000001', token.channelToken)),
      await caught(client.reportRejected('1000001', token.channelToken)), // budget_exhausted
      await caught(client.getChannelToken('12ab')),
      await caught(client.reportRejected('1000001', 'x'.repeat(5000))),
    ];
    sim.setFault({ kind: 'hang' });
    errors.push(await caught(client.getChannelToken('1000002'))); // timeout
    sim.setFault(null);
    await brokers.splice(0)[0]!.stop();
    errors.push(await caught(client.getChannelToken('1000003'))); // network_error

    expect(errors.map((e) => e.code)).toEqual([
      'unauthorized',
      'unauthorized',
      'budget_exhausted',
      'invalid_channel_id',
      'invalid_request',
      'timeout',
      'network_error',
    ]);
    for (const err of errors) {
      const text = `${err.message}\n${inspect(err, { depth: 10 })}\n${JSON.stringify(err)}`;
      for (const secret of [OTHER_KEY, WRONG_KEY, TEST_KEY, token.channelToken]) expect(text).not.toContain(secret);
    }
  });
});

describe('isInvalidTokenResponse', () => {
  it.each<[string, unknown]>([
    ['the envelope', INVALID_TOKEN],
    ['the envelope as JSON text', JSON.stringify(INVALID_TOKEN)],
    ['an error with the envelope in .body', Object.assign(new Error('x'), { body: INVALID_TOKEN })],
    ['an error with JSON text in .response.body (got)', Object.assign(new Error('x'), { response: { body: JSON.stringify(INVALID_TOKEN) } })],
    ['an error with .response.data (axios)', Object.assign(new Error('x'), { code: 'ERR_BAD_RESPONSE', response: { data: INVALID_TOKEN } })],
    ['an error with the envelope as .cause', new Error('x', { cause: INVALID_TOKEN })],
    ['an error whose own code is 15', Object.assign(new Error('invalid token.'), { code: 15 })],
  ])('when given %s, then true', (_name, value) => {
    expect(isInvalidTokenResponse(value)).toBe(true);
  });

  const circular: Record<string, unknown> = {};
  circular['cause'] = circular;
  const throwing = Object.defineProperty({}, 'code', {
    get() {
      throw new Error('getter');
    },
  });
  it.each<[string, unknown]>([
    ['a success envelope', { code: 200, status: 'success', data: { code: 15 } }],
    ['another error envelope', { code: 400, status: 'error', message: 'invalid signature.' }],
    ['code "15" as a string', { code: '15', message: 'invalid token.' }],
    ['a plain error', new Error('invalid token.')],
    ['a string that is not JSON', 'code 15 invalid token.'],
    ['null', null],
    ['a number', 15],
    ['a circular object', circular],
    ['a throwing getter', throwing],
    ['an envelope nested deeper than 4 levels', { cause: { cause: { cause: { cause: { cause: INVALID_TOKEN } } } } }],
  ])('when given %s, then false', (_name, value) => {
    expect(isInvalidTokenResponse(value)).toBe(false);
  });
});

describe('BrokerClient construction', () => {
  it('when options are invalid, then a TypeError that does not echo the key', () => {
    const make = (o: Partial<BrokerClientOptions>) => () => new BrokerClient({ baseUrl: 'http://127.0.0.1:1', apiKey: TEST_KEY, ...o });
    expect(make({ baseUrl: 'not a url' })).toThrow(TypeError);
    expect(make({ baseUrl: 'ftp://x' })).toThrow(TypeError);
    expect(make({ baseUrl: `http://user:${TEST_KEY}@host` })).toThrow(/credentials/);
    expect(make({ apiKey: '' })).toThrow(/apiKey/);
    expect(make({ account: 'a/b' })).toThrow(/account/);
    expect(make({ refreshMarginMs: -1 })).toThrow(/refreshMarginMs/);
    expect(make({ timeoutMs: 0 })).toThrow(/timeoutMs/);
  });
});
