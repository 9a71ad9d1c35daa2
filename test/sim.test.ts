import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { computeSign, signParams, type ParamValue } from '../src/polyv/sign.js';
import {
  PolyvSimulator,
  SIM_PATHS,
  defaultDemoAccount,
  type PolyvSimulatorOptions,
  type SimAccount,
  type SimEndpoint,
  type SimFault,
} from '../src/sim/polyv-simulator.js';

const ACCOUNT: SimAccount = {
  appId: 'simtestapp1',
  appSecret: 'sim-test-secret-0123456789',
  channels: ['1000001', '1000002', '1000003', '1000004', '1000005', '1000006'],
};
/** An account without a channel list: any 1-20 digit channel ID belongs to it. */
const OPEN_ACCOUNT: SimAccount = { appId: 'simopenapp1', appSecret: 'sim-open-secret-abcdef' };
const JSON_TYPE = 'application/json; charset=utf-8';
const HOUR_MS = 3_600_000;

class TestClock {
  constructor(public t = 1_700_000_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

interface TokenData {
  channelToken: string;
  expireTime: number;
  token: string;
  mediaChannelKey: string;
}
interface Reply<D = TokenData> {
  status: number;
  contentType: string;
  text: string;
  json: { code: number; status: string; message: string; data: D };
}
interface SendOptions {
  method?: string;
  /** Where the fields go; default: form body for POST, query string otherwise. */
  via?: 'body' | 'query';
  timeoutMs?: number;
  base?: string;
}

let sim: PolyvSimulator;
const extraSims: PolyvSimulator[] = [];

beforeAll(async () => {
  sim = new PolyvSimulator({ accounts: [ACCOUNT, OPEN_ACCOUNT] });
  await sim.listen(0);
});
afterEach(async () => {
  sim.setFault(null);
  await Promise.all(extraSims.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  await sim.close();
});

async function startSim(options: Partial<PolyvSimulatorOptions>): Promise<PolyvSimulator> {
  const s = new PolyvSimulator({ accounts: [ACCOUNT, OPEN_ACCOUNT], ...options });
  extraSims.push(s);
  await s.listen(0);
  return s;
}

/** Sends exactly these fields to a path of the simulator. */
async function send<D = TokenData>(path: string, fields: Record<string, string>, opts: SendOptions = {}): Promise<Reply<D>> {
  const method = opts.method ?? 'POST';
  const via = opts.via ?? (method === 'POST' ? 'body' : 'query');
  const encoded = new URLSearchParams(fields).toString();
  const res = await request(`${opts.base ?? sim.url}${path}${via === 'query' && encoded !== '' ? `?${encoded}` : ''}`, {
    method: method as 'POST',
    headers: via === 'body' ? { 'content-type': 'application/x-www-form-urlencoded' } : {},
    body: via === 'body' ? encoded : null,
    signal: AbortSignal.timeout(opts.timeoutMs ?? 5000),
  });
  const text = await res.body.text();
  let json: Reply<D>['json'];
  try {
    json = JSON.parse(text) as Reply<D>['json'];
  } catch {
    json = undefined as unknown as Reply<D>['json'];
  }
  return { status: res.statusCode, contentType: String(res.headers['content-type']), text, json };
}

/** appId + timestamp + params, signed as the broker signs them. */
function signed(params: Record<string, ParamValue>, account: SimAccount = ACCOUNT, now = Date.now()): Record<string, string> {
  return signParams({ appId: account.appId, timestamp: now, ...params }, account.appSecret);
}

/** Fields signed over exactly what is sent (including empty values), to reach checks past the signature. */
function signedRaw(fields: Record<string, string>, account: SimAccount = ACCOUNT): Record<string, string> {
  const all = { appId: account.appId, timestamp: String(Date.now()), ...fields };
  return { ...all, sign: computeSign(all, account.appSecret) };
}

function call<D = TokenData>(endpoint: SimEndpoint, params: Record<string, ParamValue>, opts: SendOptions & { account?: SimAccount; now?: number } = {}) {
  return send<D>(SIM_PATHS[endpoint], signed(params, opts.account, opts.now), opts);
}

function expectError(reply: Reply<unknown>, code: number, message: string, httpStatus = code): void {
  expect(reply.status).toBe(httpStatus);
  expect(reply.contentType).toBe(JSON_TYPE);
  expect(reply.json).toEqual({ code, status: code >= 500 ? 'fail' : 'error', message, data: '' });
}

async function admin<T = Record<string, unknown>>(method: string, path: string, body?: string): Promise<{ status: number; json: T }> {
  const res = await request(`${sim.url}${path}`, { method: method as 'GET', body: body ?? null });
  return { status: res.statusCode, json: (await res.body.json()) as T };
}

describe('PolyV endpoints: success shapes', () => {
  it('when get-channel-token is called, then it returns a 32-hex channelToken expiring expireSeconds (default 1800) from now', async () => {
    const before = Date.now();
    const res = await call('get-channel-token', { channelId: '1000001' });
    const after = Date.now();
    expect(res.status).toBe(200);
    expect(res.contentType).toBe(JSON_TYPE);
    expect(res.json).toMatchObject({ code: 200, status: 'success', message: '' });
    expect(res.json.data.channelToken).toMatch(/^[0-9a-f]{32}$/);
    expect(String(res.json.data.expireTime)).toMatch(/^\d{13}$/);
    expect(res.json.data.expireTime).toBeGreaterThanOrEqual(before + 1800_000);
    expect(res.json.data.expireTime).toBeLessThanOrEqual(after + 1800_000);
    expect(sim.checkToken('channel', '1000001', res.json.data.channelToken)).toEqual({ valid: true });
  });

  it('when expireSeconds is given, then expireTime is exactly now + expireSeconds on the sim clock', async () => {
    const clock = new TestClock();
    const s = await startSim({ clock });
    for (const seconds of [1, 3600]) {
      const res = await call('get-channel-token', { channelId: '1000001', expireSeconds: seconds }, { base: s.url, now: clock.t });
      expect(res.json.data.expireTime).toBe(clock.t + seconds * 1000);
    }
  });

  it('when get-watch-api-token is called (UTF-8 nickname), then it returns a token valid 5 hours', async () => {
    const clock = new TestClock();
    const s = await startSim({ clock });
    const res = await call('get-watch-api-token', { channelId: '1000002', viewerId: 'viewer-1', nickname: '观众 ✓', actor: '嘉宾' }, { base: s.url, now: clock.t });
    expect(res.status).toBe(200);
    expect(res.json.data).toEqual({ token: expect.stringMatching(/^[a-z0-9]{10}$/) });
    expect(s.checkToken('watch-api', '1000002', res.json.data.token)).toEqual({ valid: true });
    clock.advance(5 * HOUR_MS - 1);
    expect(s.checkToken('watch-api', '1000002', res.json.data.token).valid).toBe(true);
    clock.advance(1);
    expect(s.checkToken('watch-api', '1000002', res.json.data.token)).toEqual({ valid: false, reason: 'expired' });
  });

  it('when common/get-token is called, then it returns a 32-hex token and a long hex mediaChannelKey, valid 24 hours', async () => {
    const clock = new TestClock();
    const s = await startSim({ clock });
    const res = await call('common-get-token', { channelId: '1000003' }, { base: s.url, now: clock.t });
    expect(res.status).toBe(200);
    expect(Object.keys(res.json.data).sort()).toEqual(['mediaChannelKey', 'token']);
    expect(res.json.data.token).toMatch(/^[0-9a-f]{32}$/);
    expect(res.json.data.mediaChannelKey).toMatch(/^[0-9a-f]{640}$/);
    clock.advance(24 * HOUR_MS - 1);
    expect(s.checkToken('common', '1000003', res.json.data.token).valid).toBe(true);
    clock.advance(1);
    expect(s.checkToken('common', '1000003', res.json.data.token).valid).toBe(false);
  });

  it('when get-token-watch-url is called by GET or POST, then data is a watch URL on the simulator', async () => {
    for (const method of ['GET', 'POST']) {
      const res = await call<string>('get-token-watch-url', { channelId: '1000004' }, { method });
      expect(res.status).toBe(200);
      expect(res.json.code).toBe(200);
      expect(res.json.data).toMatch(new RegExp(`^${sim.url.replace(/\./g, '\\.')}/watch/1000004\\?token=[0-9a-f]{32}$`));
    }
  });

  it('when params are split between query string and form body, then both are read', async () => {
    const fields = signed({ channelId: '1000001' });
    const { appId, timestamp, ...rest } = fields;
    const path = `${SIM_PATHS['get-channel-token']}?${new URLSearchParams({ appId: appId!, timestamp: timestamp! }).toString()}`;
    const res = await send(path, rest);
    expect(res.json.code).toBe(200);
    const onlyQuery = await send(SIM_PATHS['get-channel-token'], signed({ channelId: '1000001' }), { via: 'query' });
    expect(onlyQuery.json.code).toBe(200);
  });

  it('when a POST body is not form-encoded, then it is ignored as PolyV does', async () => {
    const res = await request(`${sim.url}${SIM_PATHS['get-channel-token']}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(signed({ channelId: '1000001' })),
    });
    expect(await res.body.json()).toEqual({ code: 400, status: 'error', message: 'appId is required.', data: '' });
  });

  it('when the path is unknown, then 404 envelope; when the method is wrong, then 405 envelope', async () => {
    expectError(await send('/live/v3/nope', {}), 404, 'not found');
    const wrong = await call('get-channel-token', { channelId: '1000001' }, { method: 'GET' });
    expectError(wrong, 405, 'method not allowed');
    expectError(await call('common-get-token', { channelId: '1000001' }, { method: 'PUT', via: 'query' }), 405, 'method not allowed');
  });

  it('uses the same paths as the broker client', async () => {
    const { POLYV_PATHS } = await import('../src/polyv/polyv-client.js');
    expect(SIM_PATHS).toEqual(POLYV_PATHS);
  });

  it('defaultDemoAccount is the fixed demo account', () => {
    expect(defaultDemoAccount()).toEqual({
      appId: 'demoappid1',
      appSecret: 'demo-secret-not-for-production',
      channels: ['1000001', '1000002', '1000003', '3151318'],
    });
  });
});

describe('PolyV checks, in order', () => {
  it('when one IP exceeds ipLimitPer10s, then every request gets the qps error for 5 minutes, before any other check', async () => {
    const clock = new TestClock();
    const s = await startSim({ clock, ipLimitPer10s: 3 });
    const health = await request(`${s.url}/__sim/health`);
    await health.body.dump(); // the admin API does not count
    const bad = { appId: 'nosuchapp', timestamp: String(clock.t), channelId: '1000001', sign: 'X' };
    for (let i = 0; i < 3; i++) expectError(await send(SIM_PATHS['get-channel-token'], bad, { base: s.url }), 400, 'application not found.');
    expectError(await send(SIM_PATHS['get-channel-token'], bad, { base: s.url }), 400, 'qps exceeds number of calls, limit: 3');
    expectError(await call('common-get-token', { channelId: '1000001' }, { base: s.url, now: clock.t }), 400, 'qps exceeds number of calls, limit: 3');
    clock.advance(11_000);
    expectError(await call('get-channel-token', { channelId: '1000001' }, { base: s.url, now: clock.t }), 400, 'qps exceeds number of calls, limit: 3');
    clock.advance(5 * 60_000 - 11_000);
    expect((await call('get-channel-token', { channelId: '1000001' }, { base: s.url, now: clock.t })).json.code).toBe(200);
  });

  it('when appId is missing or unknown, then 400 appId is required. / application not found.', async () => {
    const { appId: _drop, ...noAppId } = signed({ channelId: '1000001' });
    expectError(await send(SIM_PATHS['get-channel-token'], noAppId), 400, 'appId is required.');
    expectError(await call('get-channel-token', { channelId: '1000001', appId: 'someoneelse' }), 400, 'application not found.');
  });

  it('when the timestamp is missing, not digits or more than 3 minutes off, then 400 invalid timestamp.', async () => {
    const now = Date.now();
    const { timestamp: _drop, ...noTimestamp } = signed({ channelId: '1000001' });
    expectError(await send(SIM_PATHS['get-channel-token'], noTimestamp), 400, 'invalid timestamp.');
    expectError(await call('get-channel-token', { channelId: '1000001', timestamp: 'abc' }), 400, 'invalid timestamp.');
    expectError(await call('get-channel-token', { channelId: '1000001' }, { now: now - 181_000 }), 400, 'invalid timestamp.');
    expectError(await call('get-channel-token', { channelId: '1000001' }, { now: now + 181_000 }), 400, 'invalid timestamp.');
    expect((await call('get-channel-token', { channelId: '1000001' }, { now: now - 170_000 })).json.code).toBe(200);
  });

  it('when the sign is wrong or missing, then 403 invalid signature.', async () => {
    const wrongSecret = await call('get-channel-token', { channelId: '1000001' }, { account: { ...ACCOUNT, appSecret: 'wrong' } });
    expectError(wrongSecret, 403, 'invalid signature.');
    const good = signed({ channelId: '1000001' });
    expectError(await send(SIM_PATHS['get-channel-token'], { ...good, sign: good['sign']!.toLowerCase() }), 403, 'invalid signature.');
    const { sign: _drop, ...unsigned } = good;
    expectError(await send(SIM_PATHS['get-channel-token'], unsigned), 403, 'invalid signature.');
    // a parameter sent but not signed
    expectError(await send(SIM_PATHS['get-channel-token'], { ...good, disposable: 'false' }), 403, 'invalid signature.');
  });

  it('when signatureMethod=SHA256, then a SHA-256 sign is accepted and an MD5 one is not', async () => {
    const sha = signed({ channelId: '1000001', signatureMethod: 'SHA256' });
    expect(sha['sign']).toMatch(/^[0-9A-F]{64}$/);
    expect((await send(SIM_PATHS['get-channel-token'], sha)).json.code).toBe(200);
    const fields = { appId: ACCOUNT.appId, timestamp: String(Date.now()), channelId: '1000001', signatureMethod: 'SHA256' };
    expectError(await send(SIM_PATHS['get-channel-token'], { ...fields, sign: computeSign(fields, ACCOUNT.appSecret, 'md5') }), 403, 'invalid signature.');
  });

  it('when a parameter is empty or blank, then 400 param should not be empty, even when it was signed', async () => {
    const params = { channelId: '1000002', viewerId: 'v1', nickname: '' };
    expectError(await send(SIM_PATHS['get-watch-api-token'], signedRaw(params)), 400, 'param should not be empty: nickname');
    expectError(await send(SIM_PATHS['get-watch-api-token'], signedRaw({ ...params, nickname: '  ' })), 400, 'param should not be empty: nickname');
    // signed by the rules (empties dropped) but the empty one still sent
    expectError(await send(SIM_PATHS['get-watch-api-token'], { ...signed(params), nickname: '' }), 400, 'param should not be empty: nickname');
  });

  it('when channelId is missing or not digits, then 400 before the channel ownership check', async () => {
    expectError(await call('get-channel-token', {}), 400, 'param should not be empty: channelId');
    expectError(await call('get-channel-token', { channelId: '12a' }), 400, 'param is not digit: channelId');
    expectError(await call('get-watch-api-token', { channelId: '-1', viewerId: 'v' }), 400, 'param is not digit: channelId');
  });

  it('when viewerId is missing or longer than 64 characters, then 400', async () => {
    expectError(await call('get-watch-api-token', { channelId: '1000002' }), 400, 'param should not be empty: viewerId');
    expectError(await call('get-watch-api-token', { channelId: '1000002', viewerId: 'v'.repeat(65) }), 400, 'param length is incorrect: viewerId');
    expect((await call('get-watch-api-token', { channelId: '1000002', viewerId: '观'.repeat(64) })).json.code).toBe(200);
  });

  it('when expireSeconds is not an integer in 0 < x <= 3600, then 400 expireSeconds limited.', async () => {
    for (const bad of ['0', '3601', '1.5', '-1', 'abc', '99999999999']) {
      expectError(await call('get-channel-token', { channelId: '1000001', expireSeconds: bad }), 400, 'expireSeconds limited.');
    }
    expectError(await call('get-channel-token', { channelId: '1000001', disposable: 'yes' }), 400, 'param validate error');
  });

  it('when the channel is not in the account, then 403 illegal channel id; an account without a list takes any 1-20 digit ID', async () => {
    expectError(await call('get-channel-token', { channelId: '9999999' }), 403, 'illegal channel id: 9999999');
    expectError(await call('common-get-token', { channelId: '9999999' }), 403, 'illegal channel id: 9999999');
    expect((await call('get-channel-token', { channelId: '9999999' }, { account: OPEN_ACCOUNT })).json.code).toBe(200);
    expectError(await call('get-channel-token', { channelId: '1'.repeat(21) }, { account: OPEN_ACCOUNT }), 403, `illegal channel id: ${'1'.repeat(21)}`);
  });

  it('when a request fails several checks, then the first one in PolyV order answers', async () => {
    const stale = Date.now() - 600_000;
    const cases: Array<[Record<string, ParamValue>, string]> = [
      [{ appId: 'nosuchapp', timestamp: stale, channelId: 'x' }, 'application not found.'],
      [{ timestamp: stale, channelId: 'x', expireSeconds: 0 }, 'invalid timestamp.'],
      [{ channelId: '9999999', expireSeconds: 0 }, 'expireSeconds limited.'],
    ];
    for (const [params, message] of cases) expect((await call('get-channel-token', params)).json.message).toBe(message);
    const badSign = { ...signed({ channelId: 'x' }), sign: 'F'.repeat(32) };
    expect((await send(SIM_PATHS['get-channel-token'], badSign)).json.message).toBe('invalid signature.');
  });

  it('when a channel gets its 501st token request within an hour, then qps error; other channels are unaffected; an hour later it is free', async () => {
    const clock = new TestClock();
    const s = await startSim({ clock });
    const get = (channelId: string) => call('get-channel-token', { channelId }, { base: s.url, now: clock.t });
    for (let batch = 0; batch < 10; batch++) {
      const replies = await Promise.all(Array.from({ length: 50 }, () => get('1000001')));
      expect(replies.map((r) => r.json.code)).toEqual(Array(50).fill(200));
    }
    expectError(await get('1000001'), 400, 'qps exceeds number of calls, limit: 500');
    expect((await get('1000002')).json.code).toBe(200);
    expect((await call('common-get-token', { channelId: '1000001' }, { base: s.url, now: clock.t })).json.code).toBe(200);
    clock.advance(HOUR_MS);
    expect((await get('1000001')).json.code).toBe(200);
  });

  it('when requests are refused by the channel limit, then they count too (rolling hour)', async () => {
    const clock = new TestClock();
    const s = await startSim({ clock, channelTokenLimitPerHour: 2 });
    const get = async () => (await call('get-channel-token', { channelId: '1000001' }, { base: s.url, now: clock.t })).json.message;
    expect([await get(), await get(), await get()]).toEqual(['', '', 'qps exceeds number of calls, limit: 2']);
    clock.advance(30 * 60_000);
    expect(await get()).toBe('qps exceeds number of calls, limit: 2');
    clock.advance(30 * 60_000);
    expect(await get()).toBe(''); // the three at t0 left the window; the one at +30 min is still in it
    expect(await get()).toBe('qps exceeds number of calls, limit: 2');
  });

  it('when the sim itself throws, then HTTP 500 with the fail envelope', async () => {
    let explode = false;
    const s = await startSim({
      clock: {
        now: () => {
          if (explode) throw new Error('boom');
          return Date.now();
        },
      },
    });
    explode = true;
    const res = await call('get-channel-token', { channelId: '1000001' }, { base: s.url });
    expect(res.status).toBe(500);
    expect(res.json).toEqual({ code: 500, status: 'fail', message: 'internal error', data: '' });
  });
});

describe('issued tokens', () => {
  it('when a new channel token is issued, then the previous one is invalidated (default)', async () => {
    const first = (await call('get-channel-token', { channelId: '1000005' })).json.data.channelToken;
    const second = (await call('get-channel-token', { channelId: '1000005' })).json.data.channelToken;
    expect(second).not.toBe(first);
    expect(sim.checkToken('channel', '1000005', first)).toEqual({ valid: false, reason: 'invalidated by a newer channel token' });
    expect(sim.checkToken('channel', '1000005', second)).toEqual({ valid: true });
    expect(sim.checkToken('channel', '1000006', second)).toEqual({ valid: false, reason: 'issued for channel 1000005' });
    expect(sim.checkToken('common', '1000005', second)).toEqual({ valid: false, reason: 'unknown token' });
    expect(sim.checkToken('channel', '1000005', 'f'.repeat(32))).toEqual({ valid: false, reason: 'unknown token' });
  });

  it('when invalidatePreviousChannelToken is false, then both tokens stay valid until they expire', async () => {
    const clock = new TestClock();
    const s = await startSim({ clock, invalidatePreviousChannelToken: false });
    const get = async () => (await call('get-channel-token', { channelId: '1000001', expireSeconds: 60 }, { base: s.url, now: clock.t })).json.data.channelToken;
    const first = await get();
    clock.advance(1000);
    const second = await get();
    expect(s.checkToken('channel', '1000001', first)).toEqual({ valid: true });
    expect(s.checkToken('channel', '1000001', second)).toEqual({ valid: true });
    clock.advance(59_000);
    expect(s.checkToken('channel', '1000001', first)).toEqual({ valid: false, reason: 'expired' });
    expect(s.checkToken('channel', '1000001', second)).toEqual({ valid: true });
  });

  it('when a disposable token is issued, then it neither invalidates nor is invalidated by the regular token; disposable=false is regular', async () => {
    const regular = (await call('get-channel-token', { channelId: '1000006' })).json.data.channelToken;
    const disposable = await call('get-channel-token', { channelId: '1000006', disposable: 'true', expireSeconds: 600 });
    expect(disposable.json.data.channelToken).toMatch(/^[0-9a-f]{32}$/);
    expect(sim.checkToken('channel', '1000006', regular)).toEqual({ valid: true });
    const next = (await call('get-channel-token', { channelId: '1000006', disposable: 'false' })).json.data.channelToken;
    expect(sim.checkToken('channel', '1000006', regular).valid).toBe(false);
    expect(sim.checkToken('channel', '1000006', disposable.json.data.channelToken)).toEqual({ valid: true });
    expect(sim.checkToken('channel', '1000006', next)).toEqual({ valid: true });
  });

  it('when a watch URL is opened, then 200 the first time and 403 afterwards', async () => {
    const url = (await call<string>('get-token-watch-url', { channelId: '1000004' })).json.data;
    expect(sim.checkToken('watch-url', '1000004', url)).toEqual({ valid: true });
    const first = await request(url);
    expect(first.statusCode).toBe(200);
    expect(await first.body.text()).toContain('1000004');
    expect(sim.checkToken('watch-url', '1000004', url)).toEqual({ valid: false, reason: 'already used' });
    const second = await request(url);
    expect(second.statusCode).toBe(403);
    expect(await second.body.text()).toContain('already used');
    const unknown = await request(`${sim.url}/watch/1000004?token=${'0'.repeat(32)}`);
    expect(unknown.statusCode).toBe(403);
    await unknown.body.dump();
  });

  it('when a watch URL is older than an hour or opened for another channel, then 403', async () => {
    const clock = new TestClock();
    const s = await startSim({ clock });
    const url = (await call<string>('get-token-watch-url', { channelId: '1000004' }, { base: s.url, now: clock.t })).json.data;
    const other = await request(url.replace('/watch/1000004', '/watch/1000003'));
    expect(other.statusCode).toBe(403);
    await other.body.dump();
    clock.advance(HOUR_MS);
    const late = await request(url);
    expect(late.statusCode).toBe(403);
    expect(await late.body.text()).toContain('expired');
  });
});

describe('faults', () => {
  it('error-code: answers the envelope with HTTP = code, records the call as faulted, issues nothing', async () => {
    sim.resetCalls();
    sim.setFault({ kind: 'error-code', code: 500, message: '' });
    expectError(await call('get-channel-token', { channelId: '1000001' }), 500, '');
    expectError(await call('common-get-token', { channelId: '1000001' }), 500, '');
    expect(sim.calls().map((c) => [c.endpoint, c.httpStatus, c.code, c.faulted])).toEqual([
      ['get-channel-token', 500, 500, true],
      ['common-get-token', 500, 500, true],
    ]);
  });

  it('error-code with times and endpoints: only the next N matching requests, then it clears itself', async () => {
    sim.setFault({ kind: 'error-code', code: 400, message: 'qps exceeds number of calls, limit: 500', times: 2, endpoints: ['get-channel-token'] });
    expect((await call('common-get-token', { channelId: '1000001' })).json.code).toBe(200);
    expectError(await call('get-channel-token', { channelId: '1000001' }), 400, 'qps exceeds number of calls, limit: 500');
    expect(sim.currentFault()).toMatchObject({ kind: 'error-code', times: 1 });
    expectError(await call('get-channel-token', { channelId: '1000001' }), 400, 'qps exceeds number of calls, limit: 500');
    expect(sim.currentFault()).toBeNull();
    expect((await call('get-channel-token', { channelId: '1000001' })).json.code).toBe(200);
  });

  it('error-code with an unusual code or an httpStatus: HTTP 200 for codes PolyV does not map, or as given', async () => {
    sim.setFault({ kind: 'error-code', code: 15, message: 'invalid token.', times: 1 });
    expectError(await call('get-channel-token', { channelId: '1000001' }), 15, 'invalid token.', 200);
    sim.setFault({ kind: 'error-code', code: 400, message: 'invalid timestamp.', httpStatus: 200, times: 1 });
    expectError(await call('get-channel-token', { channelId: '1000001' }), 400, 'invalid timestamp.', 200);
  });

  it('channelIds: only requests for those channels are faulted', async () => {
    sim.setFault({ kind: 'http-status', status: 503, channelIds: ['1000002'] });
    expect((await call('get-channel-token', { channelId: '1000001' })).json.code).toBe(200);
    expect((await call('get-channel-token', { channelId: '1000002' })).status).toBe(503);
  });

  it('http-status: a bare 502 with a non-JSON body', async () => {
    sim.setFault({ kind: 'http-status', status: 502 });
    const res = await call('get-channel-token', { channelId: '1000001' });
    expect(res.status).toBe(502);
    expect(res.contentType).toBe('text/html');
    expect(res.text).toContain('502 Bad Gateway');
    expect(res.json).toBeUndefined();
  });

  it('bad-json: HTTP 200 whose body does not parse', async () => {
    sim.setFault({ kind: 'bad-json' });
    const res = await call('get-channel-token', { channelId: '1000001' });
    expect(res.status).toBe(200);
    expect(res.text.length).toBeGreaterThan(0);
    expect(() => JSON.parse(res.text) as unknown).toThrow(SyntaxError);
  });

  it('latency: the normal answer, ms later', async () => {
    let started = performance.now();
    await call('get-channel-token', { channelId: '1000001' });
    expect(performance.now() - started).toBeLessThan(100);
    sim.setFault({ kind: 'latency', ms: 150 });
    started = performance.now();
    const res = await call('get-channel-token', { channelId: '1000001' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
    expect(res.json.code).toBe(200);
    expect(sim.checkToken('channel', '1000001', res.json.data.channelToken)).toEqual({ valid: true });
  });

  it('hang: no answer, the client times out; the call is recorded on arrival', async () => {
    sim.resetCalls();
    sim.setFault({ kind: 'hang', endpoints: ['get-watch-api-token'] });
    const started = performance.now();
    const err = (await call('get-watch-api-token', { channelId: '1000002', viewerId: 'v' }, { timeoutMs: 200 }).catch((e: unknown) => e)) as Error;
    expect(err.name).toBe('TimeoutError');
    expect(performance.now() - started).toBeLessThan(1000);
    expect(sim.calls()).toMatchObject([{ endpoint: 'get-watch-api-token', channelId: '1000002', httpStatus: 0, code: 0, faulted: true }]);
  });

  it('reset: the socket is destroyed without a response', async () => {
    sim.setFault({ kind: 'reset', times: 1 });
    const err = (await call('get-channel-token', { channelId: '1000001' }).catch((e: unknown) => e)) as Error & { code?: string };
    expect(err).toBeInstanceOf(Error);
    expect(['UND_ERR_SOCKET', 'ECONNRESET']).toContain(err.code);
    expect((await call('get-channel-token', { channelId: '1000001' })).json.code).toBe(200);
  });

  it('an invalid fault is refused instead of silently ignored', () => {
    expect(() => sim.setFault({ kind: 'latency', ms: -1 })).toThrow(/invalid fault/);
    expect(() => sim.setFault({ kind: 'hang', times: 0 })).toThrow(/times/);
    expect(() => sim.setFault({ kind: 'explode' } as unknown as SimFault)).toThrow(/invalid fault/);
    expect(sim.currentFault()).toBeNull();
  });
});

describe('calls()', () => {
  it('records what was received, without sign and never the secret, filterable by endpoint and channel', async () => {
    const clock = new TestClock();
    const s = await startSim({ clock });
    const opts = { base: s.url, now: clock.t };
    await call('get-channel-token', { channelId: '1000001', expireSeconds: 3600 }, opts);
    await call('get-channel-token', { channelId: '9999999' }, opts);
    await call('get-watch-api-token', { channelId: '1000001', viewerId: 'v1' }, opts);
    await call('get-channel-token', { channelId: '1000002', appSecret: ACCOUNT.appSecret, note: ACCOUNT.appSecret }, opts);

    const channelCalls = s.calls({ endpoint: 'get-channel-token' });
    expect(channelCalls).toHaveLength(3);
    expect(channelCalls[0]).toEqual({
      endpoint: 'get-channel-token',
      at: clock.t,
      channelId: '1000001',
      params: { appId: ACCOUNT.appId, timestamp: String(clock.t), channelId: '1000001', expireSeconds: '3600' },
      httpStatus: 200,
      code: 200,
      message: '',
      faulted: false,
    });
    expect(channelCalls[1]).toMatchObject({ channelId: '9999999', httpStatus: 403, code: 403, message: 'illegal channel id: 9999999' });
    expect(channelCalls[2]!.params).toMatchObject({ appSecret: '[REDACTED]', note: '[REDACTED]' });
    expect(s.calls({ channelId: '1000001' }).map((c) => c.endpoint)).toEqual(['get-channel-token', 'get-watch-api-token']);
    const everything = JSON.stringify(s.calls());
    expect(everything).not.toContain(ACCOUNT.appSecret);
    expect(everything).not.toContain('"sign"');
    s.resetCalls();
    expect(s.calls()).toEqual([]);
  });
});

describe('admin HTTP API', () => {
  it('health', async () => {
    expect(await admin('GET', '/__sim/health')).toEqual({ status: 200, json: { ok: true } });
  });

  it('POST /__sim/faults sets a fault (whatever the content type, as curl -d sends it); DELETE clears it', async () => {
    const set = await request(`${sim.url}/__sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: JSON.stringify({ kind: 'error-code', code: 500, message: 'busy', endpoints: ['common-get-token'] }),
    });
    expect(set.statusCode).toBe(200);
    await set.body.dump();
    expect((await admin('GET', '/__sim/faults')).json).toEqual({ fault: { kind: 'error-code', code: 500, message: 'busy', endpoints: ['common-get-token'] } });
    expectError(await call('common-get-token', { channelId: '1000001' }), 500, 'busy');
    expect(await admin('DELETE', '/__sim/faults')).toEqual({ status: 200, json: { ok: true } });
    expect((await call('common-get-token', { channelId: '1000001' })).json.code).toBe(200);
  });

  it('POST /__sim/faults with an invalid fault answers 400 and changes nothing', async () => {
    const notJson = await admin<{ error: string }>('POST', '/__sim/faults', '{kind:');
    expect(notJson.status).toBe(400);
    const typo = await admin<{ error: string }>('POST', '/__sim/faults', JSON.stringify({ kind: 'hang', time: 1 }));
    expect(typo.status).toBe(400);
    expect(typo.json.error).toMatch(/time/);
    expect(sim.currentFault()).toBeNull();
  });

  it('GET /__sim/calls filters; DELETE /__sim/calls resets; admin requests are not recorded', async () => {
    await admin('DELETE', '/__sim/calls');
    await call('get-channel-token', { channelId: '1000003' });
    await call('common-get-token', { channelId: '1000003' });
    await call('get-channel-token', { channelId: '1000001' });
    const filtered = await admin<{ calls: Array<{ endpoint: string; channelId: string; params: Record<string, string> }> }>(
      'GET',
      '/__sim/calls?endpoint=get-channel-token&channelId=1000003',
    );
    expect(filtered.json.calls).toHaveLength(1);
    expect(filtered.json.calls[0]).toMatchObject({ endpoint: 'get-channel-token', channelId: '1000003', params: { channelId: '1000003' } });
    expect((await admin<{ calls: unknown[] }>('GET', '/__sim/calls')).json.calls).toHaveLength(3);
    expect((await admin('GET', '/__sim/calls?endpoint=nope')).status).toBe(400);
    await admin('DELETE', '/__sim/calls');
    expect(sim.calls()).toEqual([]);
  });

  it('GET /__sim/check tells whether a token is valid', async () => {
    const token = (await call('get-channel-token', { channelId: '1000003' })).json.data.channelToken;
    expect((await admin('GET', `/__sim/check?kind=channel&channelId=1000003&token=${token}`)).json).toEqual({ valid: true });
    expect((await admin('GET', `/__sim/check?kind=channel&channelId=1000003&token=nope`)).json).toEqual({ valid: false, reason: 'unknown token' });
    expect((await admin('GET', `/__sim/check?kind=bogus&channelId=1000003&token=${token}`)).status).toBe(400);
    expect((await admin('GET', '/__sim/nope')).status).toBe(404);
    expect((await admin('PUT', '/__sim/health')).status).toBe(405);
  });
});

describe('lifecycle', () => {
  it('close() returns promptly despite keep-alive sockets and hung requests', async () => {
    const s = await startSim({});
    const agent = new Agent({ keepAliveTimeout: 60_000 });
    try {
      const first = await request(`${s.url}/__sim/health`, { dispatcher: agent });
      await first.body.dump();
      s.setFault({ kind: 'hang' });
      const hung = request(`${s.url}${SIM_PATHS['get-channel-token']}`, { method: 'POST', dispatcher: agent }).catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 50));
      const started = performance.now();
      await s.close();
      expect(performance.now() - started).toBeLessThan(500);
      expect(await hung).toBeInstanceOf(Error);
      expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    } finally {
      await agent.destroy();
    }
  });

  it('rejects invalid options', () => {
    expect(() => new PolyvSimulator({ accounts: [ACCOUNT, ACCOUNT] })).toThrow(/duplicate/);
    expect(() => new PolyvSimulator({ accounts: [ACCOUNT], ipLimitPer10s: 0 })).toThrow(RangeError);
  });
});
