import { describe, expect, it } from 'vitest';
import { LogCapture, TEST_ACCOUNT, TEST_KEY, api, testConfig, useSimulator, type TestBroker, type TokenBody, type ErrorBody } from './support/harness.js';


const fx = useSimulator();

function broker(env: Record<string, string> = {}, logs?: LogCapture): Promise<TestBroker> {
  return fx.broker(testConfig(fx.sim.url, { BROKER_ROLE: 'api', ...env }), logs ? { logger: logs.logger } : {});
}

const channelCalls = (channelId: string) => fx.sim.calls({ endpoint: 'get-channel-token', channelId }).length;

describe('GET /v1/channels/{channelId}/token', () => {
  it('when the channel is cold, then it fetches once from PolyV, answers 200 and serves the cache afterwards', async () => {
    const b = await broker();
    const first = await api<TokenBody>(b.url, '/v1/channels/1000001/token');
    expect(first.status).toBe(200);
    expect(first.body.channelId).toBe('1000001');
    expect(first.body.expireTime).toBeGreaterThan(Date.now() + 3500_000);
    expect(fx.sim.checkToken('channel', '1000001', first.body.channelToken)).toEqual({ valid: true });
    expect(first.headers.get('cache-control')).toBe('no-store');

    const second = await api<TokenBody>(b.url, '/v1/channels/1000001/token');
    expect(second.body).toEqual(first.body);
    expect(channelCalls('1000001')).toBe(1);
    const sent = fx.sim.calls({ endpoint: 'get-channel-token' })[0]!.params;
    expect(sent).toMatchObject({ appId: TEST_ACCOUNT.appId, channelId: '1000001', expireSeconds: '3600' });
    expect(Object.values(sent)).not.toContain('');
  });

  it('when 40 cold requests hit three replicas at once, then PolyV is called exactly once and all get the same token', async () => {
    const env = { BROKER_REDIS_PREFIX: `sf${Date.now().toString(36)}` };
    const replicas = await Promise.all([broker(env), broker(env), broker(env)]);
    fx.sim.setFault({ kind: 'latency', ms: 200 });
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => api<TokenBody>(replicas[i % 3]!.url, '/v1/channels/1000002/token')),
    );
    expect(results.map((r) => r.status)).toEqual(Array(40).fill(200));
    expect(new Set(results.map((r) => r.body.channelToken)).size).toBe(1);
    expect(channelCalls('1000002')).toBe(1);
  });

  it('when the channel ID is not 1-20 digits, then 400 before any other work', async () => {
    const b = await broker();
    for (const bad of ['abc', '12a', '123456789012345678901', '-1', '1.5']) {
      const res = await api<ErrorBody>(b.url, `/v1/channels/${bad}/token`);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_channel_id');
    }
    expect(fx.sim.calls().length).toBe(0);
  });

  it('when PolyV says the channel is not in the account, then 404 channel_not_in_account, remembered without asking again', async () => {
    const b = await broker();
    const first = await api<ErrorBody>(b.url, '/v1/channels/9999999/token');
    expect(first.status).toBe(404);
    expect(first.body.error.code).toBe('channel_not_in_account');
    const second = await api<ErrorBody>(b.url, '/v1/channels/9999999/token');
    expect(second.status).toBe(404);
    expect(channelCalls('9999999')).toBe(1);
  });

  it('when PolyV is down and no token is cached, then 503 upstream_unavailable with Retry-After', async () => {
    const b = await broker();
    fx.sim.setFault({ kind: 'http-status', status: 502 });
    const res = await api<ErrorBody>(b.url, '/v1/channels/1000003/token');
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('upstream_unavailable');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  });

  it('when PolyV hangs, then the broker gives up at its timeout with 503 instead of hanging', async () => {
    const b = await broker({ POLYV_TIMEOUT_MS: '300' });
    fx.sim.setFault({ kind: 'hang' });
    const started = Date.now();
    const res = await api<ErrorBody>(b.url, '/v1/channels/1000003/token');
    expect(res.status).toBe(503);
    expect(res.body.error.message).toMatch(/did not answer within 300 ms/);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('when PolyV says invalid timestamp once, then the call is re-signed with a fresh timestamp and succeeds', async () => {
    const b = await broker();
    fx.sim.setFault({ kind: 'error-code', code: 400, message: 'invalid timestamp.', times: 1 });
    const res = await api<TokenBody>(b.url, '/v1/channels/1000003/token');
    expect(res.status).toBe(200);
    const calls = fx.sim.calls({ endpoint: 'get-channel-token', channelId: '1000003' });
    expect(calls).toHaveLength(2);
    expect(calls[0]!.params['timestamp']).not.toBeUndefined();
  });

  it('when the appSecret is wrong, then 503 upstream_auth_failed, logged at error level without the secret', async () => {
    const logs = new LogCapture();
    const b = await broker({ POLYV_APP_SECRET: 'wrong-secret-value-123' }, logs);
    const res = await api<ErrorBody>(b.url, '/v1/channels/1000004/token');
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('upstream_auth_failed');
    expect(logs.lines.some((l) => JSON.parse(l).level === 50)).toBe(true);
    expect(logs.text).not.toContain('wrong-secret-value-123');
    expect(JSON.stringify(res.body)).not.toContain('wrong-secret-value-123');
  });
});

describe('budget', () => {
  it('when the channel budget is spent, then a valid token is still served, and a refresh is refused with 503 and Retry-After', async () => {
    const b = await broker({ BROKER_CHANNEL_BUDGET_PER_HOUR: '2' });
    const first = await api<TokenBody>(b.url, '/v1/channels/1000005/token');
    const second = await api<TokenBody>(b.url, '/v1/channels/1000005/token/refresh', {
      method: 'POST',
      body: { rejectedToken: first.body.channelToken },
    });
    expect(second.status).toBe(200);
    expect(second.body.channelToken).not.toBe(first.body.channelToken);
    const third = await api<ErrorBody>(b.url, '/v1/channels/1000005/token/refresh', {
      method: 'POST',
      body: { rejectedToken: second.body.channelToken },
    });
    expect(third.status).toBe(503);
    expect(third.body.error.code).toBe('budget_exhausted');
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(3000);
    expect(channelCalls('1000005')).toBe(2);
    const stillServed = await api<TokenBody>(b.url, '/v1/channels/1000005/token');
    expect(stillServed.status).toBe(200);
    expect(stillServed.body.channelToken).toBe(second.body.channelToken);
  });
});

describe('POST /v1/channels/{channelId}/token/refresh (compare-and-refresh)', () => {
  it('when 30 reports of the same rejected token arrive on two replicas, then PolyV is called once more in total', async () => {
    const env = { BROKER_REDIS_PREFIX: `cr${Date.now().toString(36)}` };
    const [a, b] = await Promise.all([broker(env), broker(env)]);
    const original = await api<TokenBody>(a.url, '/v1/channels/2000001/token');
    fx.sim.setFault({ kind: 'latency', ms: 100 });
    const reports = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        api<TokenBody>((i % 2 ? a : b).url, '/v1/channels/2000001/token/refresh', {
          method: 'POST',
          body: { rejectedToken: original.body.channelToken },
        }),
      ),
    );
    expect(reports.map((r) => r.status)).toEqual(Array(30).fill(200));
    const tokens = new Set(reports.map((r) => r.body.channelToken));
    expect(tokens.size).toBe(1);
    expect(tokens.has(original.body.channelToken)).toBe(false);
    expect(channelCalls('2000001')).toBe(2);
  });

  it('when the reported token is no longer current, then the current one is returned without a PolyV call', async () => {
    const b = await broker();
    const current = await api<TokenBody>(b.url, '/v1/channels/2000002/token');
    const res = await api<TokenBody>(b.url, '/v1/channels/2000002/token/refresh', {
      method: 'POST',
      body: { rejectedToken: 'some-older-token' },
    });
    expect(res.status).toBe(200);
    expect(res.body.channelToken).toBe(current.body.channelToken);
    expect(channelCalls('2000002')).toBe(1);
  });

  it('when the body is malformed, missing or too large, then 400/413 JSON errors and no PolyV call', async () => {
    const b = await broker();
    const path = '/v1/channels/2000003/token/refresh';
    const malformed = await api<ErrorBody>(b.url, path, { method: 'POST', rawBody: '{"rejectedToken":' });
    expect([malformed.status, malformed.body.error.code]).toEqual([400, 'invalid_json']);
    const missing = await api<ErrorBody>(b.url, path, { method: 'POST', body: {} });
    expect([missing.status, missing.body.error.code]).toEqual([400, 'invalid_request']);
    const notString = await api<ErrorBody>(b.url, path, { method: 'POST', body: { rejectedToken: 42 } });
    expect(notString.status).toBe(400);
    const huge = await api<ErrorBody>(b.url, path, { method: 'POST', body: { rejectedToken: 'x'.repeat(100_000) } });
    expect([huge.status, huge.body.error.code]).toEqual([413, 'payload_too_large']);
    expect(fx.sim.calls().length).toBe(0);
  });
});

describe('authentication and errors', () => {
  it('when the key is missing or wrong, then 401 JSON; /healthz, /readyz and /metrics need no key', async () => {
    const b = await broker();
    const none = await api<ErrorBody>(b.url, '/v1/channels/1000001/token', { key: null });
    expect([none.status, none.body.error.code]).toEqual([401, 'unauthorized']);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const wrong = await api<ErrorBody>(b.url, '/v1/channels/1000001/token', { key: `${TEST_KEY}x` });
    expect(wrong.status).toBe(401);
    const basic = await api<ErrorBody>(b.url, '/v1/channels', { key: null, headers: { authorization: `Basic ${TEST_KEY}` } });
    expect(basic.status).toBe(401);
    expect(fx.sim.calls().length).toBe(0);
    expect((await api(b.url, '/healthz', { key: null })).status).toBe(200);
    const ready = await api<{ status: string; checks: Record<string, string> }>(b.url, '/readyz', { key: null });
    expect(ready.status).toBe(200);
    expect(ready.body.checks['redis']).toBe('ok');
    const metrics = await api<string>(b.url, '/metrics', { key: null });
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('polyv_broker_tokens_served_total');
  });

  it('when the route is unknown, then 404 JSON', async () => {
    const b = await broker();
    const res = await api<ErrorBody>(b.url, '/nope', { key: null });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
    const v1 = await api<ErrorBody>(b.url, '/v1/nope');
    expect(v1.status).toBe(404);
  });
});

describe('warm channel management', () => {
  it('PUT makes a channel warm, GET /v1/channels lists its state, DELETE stops it', async () => {
    const b = await broker();
    const put = await api<Record<string, unknown>>(b.url, '/v1/channels/1000001', { method: 'PUT' });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ channelId: '1000001', warm: 'pinned', warmFrom: null, warmUntil: null, budgetPerHour: 450 });
    const token = await api<TokenBody>(b.url, '/v1/channels/1000001/token');
    const list = await api<{ channels: Array<Record<string, unknown>> }>(b.url, '/v1/channels');
    expect(list.status).toBe(200);
    const entry = list.body.channels.find((c) => c['channelId'] === '1000001');
    expect(entry).toMatchObject({ warm: 'pinned', callsLastHour: 1, lastError: null });
    expect(entry!['expireTime']).toBeGreaterThan(Date.now());
    expect(entry!['nextRefreshAt']).toBeGreaterThan(Date.now());
    expect(JSON.stringify(list.body)).not.toContain(token.body.channelToken);
    const del = await api(b.url, '/v1/channels/1000001', { method: 'DELETE' });
    expect(del.status).toBe(204);
    const after = await api<{ channels: unknown[] }>(b.url, '/v1/channels');
    expect(after.body.channels).toEqual([]);
  });
});
