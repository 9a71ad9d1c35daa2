import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Response } from 'express';
import { afterAll, describe, expect, it } from 'vitest';
import type { PolyvAccount } from '../src/config/config.js';
import { BrokerError } from '../src/errors/broker-error.js';
import { budgetCommand } from '../src/cli/oncall-commands.js';
import { authorize, mayAccess } from '../src/http/authorize.js';
import type { SimAccount } from '../src/sim/polyv-simulator.js';
import { OTHER_KEY, TEST_ACCOUNT, TEST_KEY, api, eventually, testConfig, useSimulator, type TestBroker, type TokenBody, type ErrorBody } from './support/harness.js';

interface ChannelState {
  channelId: string;
  warm: 'pinned' | 'on-demand' | false;
  callsLastHour: number;
  budgetPerHour: number;
}

const PARTNER: SimAccount = {
  appId: 'partnerapp2',
  appSecret: 'partner-secret-0123456789abcdef',
  channels: ['1000001', '1000002', '1000003', '3000001', '3000002', '3000003'],
};
const PARTNER_BUDGET = 2;

const ACCOUNT_KEY = 'account-scoped-key-0123456789';
const CHANNEL_KEY = 'channel-scoped-key-0123456789';
const CHANNEL_KEY_SHA = createHash('sha256').update(CHANNEL_KEY).digest('hex');
const KIND_KEY = 'kind-scoped-key-0123456789';
const ALL_KEYS = [TEST_KEY, OTHER_KEY, ACCOUNT_KEY, CHANNEL_KEY, CHANNEL_KEY_SHA, KIND_KEY];

const dir = mkdtempSync(join(tmpdir(), 'ptb-accounts-'));
// Real PolyV channel IDs are unique across accounts; the simulator tracks "the current token" per channel ID
// only, so it must not invalidate one account's token when the other account fetches the same channel ID.
const fx = useSimulator({ accounts: [TEST_ACCOUNT, PARTNER], invalidatePreviousChannelToken: false });
let brokersStarted = 0;

/** A config file with the partner account (budget 2 per hour) and three scoped consumers. */
function configFile(partnerChannels: string[] = []): string {
  const path = join(dir, `broker-${brokersStarted}-${Date.now()}.yaml`);
  writeFileSync(
    path,
    `
accounts:
  - name: partner
    appId: ${PARTNER.appId}
    appSecretEnv: PARTNER_SECRET
    channels: ${JSON.stringify(partnerChannels)}
    budgets: { channelTokenPerHour: ${PARTNER_BUDGET} }
consumers:
  - name: acct-only
    key: "${ACCOUNT_KEY}"
    accounts: [partner]
  - name: chan-only
    keySha256: "${CHANNEL_KEY_SHA}"
    channels: ["1000002"]
  - name: watch-only
    key: "${KIND_KEY}"
    kinds: [watch_api]
`,
  );
  return path;
}

async function broker(env: Record<string, string> = {}, partnerChannels: string[] = []): Promise<TestBroker> {
  const config = testConfig(fx.sim.url, {
    BROKER_ROLE: 'api',
    BROKER_CONFIG_FILE: configFile(partnerChannels),
    PARTNER_SECRET: PARTNER.appSecret,
    ...env,
  });
  brokersStarted += 1;
  return fx.broker(config);
}

const callsBy = (appId: string, channelId: string) =>
  fx.sim.calls({ endpoint: 'get-channel-token', channelId }).filter((c) => c.params['appId'] === appId).length;

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('several PolyV accounts', () => {
  it('when the same channel ID is read in two accounts, then each account gets its own token from its own appId and Redis namespace', async () => {
    const b = await broker();
    const main = await api<TokenBody>(b.url, '/v1/channels/1000001/token');
    const partner = await api<TokenBody>(b.url, '/v1/accounts/partner/channels/1000001/token');
    const mainByName = await api<TokenBody>(b.url, '/v1/accounts/default/channels/1000001/token');

    expect([main.status, partner.status, mainByName.status]).toEqual([200, 200, 200]);
    expect(partner.body.channelToken).not.toBe(main.body.channelToken);
    expect(mainByName.body.channelToken).toBe(main.body.channelToken);
    expect(fx.sim.checkToken('channel', '1000001', main.body.channelToken)).toEqual({ valid: true });
    expect(fx.sim.checkToken('channel', '1000001', partner.body.channelToken)).toEqual({ valid: true });
    expect([callsBy(TEST_ACCOUNT.appId, '1000001'), callsBy(PARTNER.appId, '1000001')]).toEqual([1, 1]);

    expect((await b.app.store.read(TEST_ACCOUNT.appId, '1000001'))?.token).toBe(main.body.channelToken);
    expect((await b.app.store.read(PARTNER.appId, '1000001'))?.token).toBe(partner.body.channelToken);
  });

  it('when an account is not configured, then its routes answer 404 not_found', async () => {
    const b = await broker();
    const res = await api<ErrorBody>(b.url, '/v1/accounts/nobody/channels/1000001/token');
    expect(res.status).toBe(404);
    expect(res.body.error).toEqual({ code: 'not_found', message: 'unknown account: nobody' });
    expect(fx.sim.calls()).toHaveLength(0);
  });

  it("when an account sets budgets.channelTokenPerHour, then its channels stop at that budget while the default account's do not", async () => {
    const b = await broker();
    const first = await api<TokenBody>(b.url, '/v1/accounts/partner/channels/3000001/token');
    expect(first.status).toBe(200);
    const second = await api<TokenBody>(b.url, '/v1/accounts/partner/channels/3000001/token/refresh', {
      method: 'POST',
      body: { rejectedToken: first.body.channelToken },
    });
    expect(second.status).toBe(200);
    expect(second.body.channelToken).not.toBe(first.body.channelToken);
    const third = await api<ErrorBody>(b.url, '/v1/accounts/partner/channels/3000001/token/refresh', {
      method: 'POST',
      body: { rejectedToken: second.body.channelToken },
    });
    expect(third.status).toBe(503);
    expect(third.body.error.code).toBe('budget_exhausted');
    expect(third.headers.get('retry-after')).not.toBeNull();
    expect(callsBy(PARTNER.appId, '3000001')).toBe(2);

    const state = await api<ChannelState>(b.url, '/v1/accounts/partner/channels/3000001');
    expect(state.body).toMatchObject({ callsLastHour: 2, budgetPerHour: PARTNER_BUDGET });
    const defaultState = await api<ChannelState>(b.url, '/v1/channels/1000003');
    expect(defaultState.body.budgetPerHour).toBe(450);
    const printed: string[] = [];
    await budgetCommand(b.app, ['3000001', '--account', 'partner', '--json'], (line) => printed.push(line));
    expect(JSON.parse(printed.join('\n'))).toMatchObject({ callsLastHour: 2, budgetPerHour: PARTNER_BUDGET, remaining: 0 });
    const metrics = await fetch(`${b.url}/metrics`).then((r) => r.text());
    expect(metrics).toContain(`polyv_broker_channel_budget_per_hour{account="partner"} ${PARTNER_BUDGET}`);
    expect(metrics).toContain('polyv_broker_channel_budget_per_hour{account="default"} 450');

    // Disposable tokens draw from the same per-account budget.
    const d1 = await api(b.url, '/v1/accounts/partner/channels/3000002/token?disposable=true');
    const d2 = await api(b.url, '/v1/accounts/partner/channels/3000002/token?disposable=true');
    const d3 = await api<ErrorBody>(b.url, '/v1/accounts/partner/channels/3000002/token?disposable=true');
    expect([d1.status, d2.status, d3.status]).toEqual([200, 200, 503]);
    expect(d3.body.error.code).toBe('budget_exhausted');
    const main = await Promise.all([1, 2, 3].map(() => api(b.url, '/v1/channels/1000003/token?disposable=true')));
    expect(main.map((r) => r.status)).toEqual([200, 200, 200]);
  });

  it('when POLYV_APP_ID is unset, then the first file account is the default for /v1/channels and there is no `default` account', async () => {
    const b = await broker({ POLYV_APP_ID: '', POLYV_APP_SECRET: '' });
    const res = await api<TokenBody>(b.url, '/v1/channels/3000003/token');
    expect(res.status).toBe(200);
    expect(callsBy(PARTNER.appId, '3000003')).toBe(1);
    expect(fx.sim.checkToken('channel', '3000003', res.body.channelToken)).toEqual({ valid: true });
    expect((await api<{ account: string }>(b.url, '/v1/channels')).body.account).toBe('partner');
    expect((await api(b.url, '/v1/accounts/default/channels/1000001/token')).status).toBe(404);
    expect(b.app.accounts.all.map((a) => a.name)).toEqual(['partner']);
  });

  it('when the worker runs, then it keeps the warm channels of every account fresh, each with its own appId', async () => {
    const b = await broker({ BROKER_ROLE: 'all', BROKER_CHANNELS: '1000004' }, ['3000003']);
    const [mainToken, partnerToken] = await eventually(async () => {
      const both = await Promise.all([b.app.store.read(TEST_ACCOUNT.appId, '1000004'), b.app.store.read(PARTNER.appId, '3000003')]);
      return both.every((t) => t !== null) ? both : undefined;
    });
    expect(fx.sim.checkToken('channel', '1000004', mainToken!.token)).toEqual({ valid: true });
    expect(fx.sim.checkToken('channel', '3000003', partnerToken!.token)).toEqual({ valid: true });
    expect([callsBy(TEST_ACCOUNT.appId, '1000004'), callsBy(PARTNER.appId, '3000003')]).toEqual([1, 1]);
    const partnerList = await api<{ account: string; channels: ChannelState[] }>(b.url, '/v1/accounts/partner/channels');
    expect(partnerList.body.account).toBe('partner');
    expect(partnerList.body.channels.map((c) => [c.channelId, c.warm])).toEqual([['3000003', 'pinned']]);
  });
});

describe('scoped consumers', () => {
  /** Every response body of these tests, to check that no key ever shows up in one. */
  const bodies: string[] = [];
  const call = async <T = ErrorBody>(url: string, path: string, init: Parameters<typeof api>[2] = {}) => {
    const res = await api<T>(url, path, init);
    bodies.push(JSON.stringify(res.body ?? ''), res.headers.get('www-authenticate') ?? '');
    return res;
  };
  const forbidden = (consumer: string, channel: string | undefined, account: string) => ({
    error: {
      code: 'forbidden',
      message: `consumer ${consumer} may not read channel tokens${channel === undefined ? '' : ` of channel ${channel}`} in account ${account}`,
    },
  });

  it('when the key is missing or unknown, then 401, whatever the scope rules', async () => {
    const b = await broker();
    const none = await call(b.url, '/v1/channels/1000002/token', { key: null });
    const unknown = await call(b.url, '/v1/channels/1000002/token', { key: 'not-a-configured-key-0123' });
    const digestAsKey = await call(b.url, '/v1/channels/1000002/token', { key: CHANNEL_KEY_SHA });
    expect([none.status, unknown.status, digestAsKey.status]).toEqual([401, 401, 401]);
    expect(unknown.body.error).toEqual({ code: 'unauthorized', message: 'the API key is not valid' });
    expect(digestAsKey.body.error.code).toBe('unauthorized');
  });

  it('when a consumer is limited to accounts, then other accounts answer 403 and its own 200', async () => {
    const b = await broker();
    const other = await call(b.url, '/v1/channels/1000001/token', { key: ACCOUNT_KEY });
    expect(other.status).toBe(403);
    expect(other.body).toEqual(forbidden('acct-only', '1000001', 'default'));
    const byName = await call(b.url, '/v1/accounts/default/channels/1000001/token', { key: ACCOUNT_KEY });
    expect(byName.status).toBe(403);
    expect(callsBy(TEST_ACCOUNT.appId, '1000001')).toBe(0);

    const own = await call<TokenBody>(b.url, '/v1/accounts/partner/channels/1000001/token', { key: ACCOUNT_KEY });
    expect(own.status).toBe(200);
    expect(fx.sim.checkToken('channel', '1000001', own.body.channelToken)).toEqual({ valid: true });
  });

  it('when a consumer is limited to channels (a hashed key), then other channels answer 403 in every account and its channel 200', async () => {
    const b = await broker();
    const other = await call(b.url, '/v1/channels/1000001/token', { key: CHANNEL_KEY });
    expect(other.status).toBe(403);
    expect(other.body).toEqual(forbidden('chan-only', '1000001', 'default'));
    const otherInPartner = await call(b.url, '/v1/accounts/partner/channels/1000001/token', { key: CHANNEL_KEY });
    expect(otherInPartner.body).toEqual(forbidden('chan-only', '1000001', 'partner'));

    const own = await call<TokenBody>(b.url, '/v1/channels/1000002/token', { key: CHANNEL_KEY });
    const ownInPartner = await call<TokenBody>(b.url, '/v1/accounts/partner/channels/1000002/token', { key: CHANNEL_KEY });
    expect([own.status, ownInPartner.status]).toEqual([200, 200]);
    expect(own.body.channelId).toBe('1000002');
    expect(ownInPartner.body.channelToken).not.toBe(own.body.channelToken);
  });

  it('when a consumer is limited to other token kinds, then channel tokens answer 403', async () => {
    const b = await broker();
    const res = await call(b.url, '/v1/channels/1000002/token', { key: KIND_KEY });
    expect(res.status).toBe(403);
    expect(res.body).toEqual(forbidden('watch-only', '1000002', 'default'));
    const disposable = await call(b.url, '/v1/channels/1000002/token?disposable=true', { key: KIND_KEY });
    expect(disposable.body).toEqual(forbidden('watch-only', '1000002', 'default'));
    expect(fx.sim.calls()).toHaveLength(0);
  });

  it('when a consumer is limited to watch_api tokens, then it gets viewer tokens and 403 for every other kind', async () => {
    const b = await broker();
    const viewer = await call<{ token: string }>(b.url, '/v1/channels/1000002/watch-tokens', {
      method: 'POST',
      body: { viewerId: 'viewer-1' },
      key: KIND_KEY,
    });
    expect(viewer.status).toBe(200);
    expect(fx.sim.checkToken('watch-api', '1000002', viewer.body.token)).toEqual({ valid: true });

    const common = await call(b.url, '/v1/channels/1000002/common-token', { key: KIND_KEY });
    const commonRefresh = await call(b.url, '/v1/channels/1000002/common-token/refresh', {
      method: 'POST',
      body: { rejectedToken: 'x' },
      key: KIND_KEY,
    });
    const url = await call(b.url, '/v1/channels/1000002/watch-urls', { method: 'POST', key: KIND_KEY });
    expect([common.status, commonRefresh.status, url.status]).toEqual([403, 403, 403]);
    expect(common.body.error.message).toBe('consumer watch-only may not read common tokens of channel 1000002 in account default');
    expect(url.body.error.message).toBe('consumer watch-only may not read watch_url tokens of channel 1000002 in account default');
    expect(fx.sim.calls({ endpoint: 'common-get-token' })).toHaveLength(0);
    expect(fx.sim.calls({ endpoint: 'get-token-watch-url' })).toHaveLength(0);

    const otherChannel = await call(b.url, '/v1/channels/1000001/watch-tokens', {
      method: 'POST',
      body: { viewerId: 'viewer-1' },
      key: CHANNEL_KEY,
    });
    expect(otherChannel.body).toEqual({
      error: { code: 'forbidden', message: 'consumer chan-only may not read watch_api tokens of channel 1000001 in account default' },
    });
  });

  it('when a token is cached in process memory, then the fast path still refuses a consumer outside its scope', async () => {
    const b = await broker();
    const warmed = await call<TokenBody>(b.url, '/v1/channels/1000001/token');
    expect(warmed.status).toBe(200);
    const hit = await call<TokenBody>(b.url, '/v1/channels/1000001/token');
    expect(hit.body.channelToken).toBe(warmed.body.channelToken);
    for (const key of [ACCOUNT_KEY, CHANNEL_KEY, KIND_KEY]) {
      const res = await call(b.url, '/v1/channels/1000001/token', { key });
      expect(res.status, key.slice(0, 8)).toBe(403);
    }
    expect(callsBy(TEST_ACCOUNT.appId, '1000001')).toBe(1);
  });

  it('when a consumer outside its scope refreshes, warms, forgets or inspects a channel, then 403 and nothing changes', async () => {
    const b = await broker();
    const token = await call<TokenBody>(b.url, '/v1/channels/1000001/token');
    const attempts = [
      call(b.url, '/v1/channels/1000001/token/refresh', { method: 'POST', body: { rejectedToken: token.body.channelToken }, key: CHANNEL_KEY }),
      call(b.url, '/v1/channels/1000005', { method: 'PUT', key: CHANNEL_KEY }),
      call(b.url, '/v1/channels/1000001', { method: 'DELETE', key: CHANNEL_KEY }),
      call(b.url, '/v1/channels/1000001', { key: CHANNEL_KEY }),
    ];
    const results = await Promise.all(attempts);
    expect(results.map((r) => r.status)).toEqual([403, 403, 403, 403]);
    expect(results[1]!.body).toEqual(forbidden('chan-only', '1000005', 'default'));

    const after = await call<TokenBody>(b.url, '/v1/channels/1000001/token');
    expect(after.body.channelToken).toBe(token.body.channelToken);
    const state = await call<ChannelState>(b.url, '/v1/channels/1000005');
    expect(state.body.warm).toBe(false);
    expect(callsBy(TEST_ACCOUNT.appId, '1000001')).toBe(1);
    expect(await b.app.store.read(TEST_ACCOUNT.appId, '1000001')).not.toBeNull();
  });

  it('when a consumer lists channels, then it sees only those in scope, or 403 without the account or the channel kind', async () => {
    const b = await broker();
    for (const ch of ['1000001', '1000002']) expect((await call(b.url, `/v1/channels/${ch}`, { method: 'PUT' })).status).toBe(200);

    const all = await call<{ channels: ChannelState[] }>(b.url, '/v1/channels');
    expect(all.body.channels.map((c) => c.channelId)).toEqual(['1000001', '1000002']);
    const scoped = await call<{ account: string; channels: ChannelState[] }>(b.url, '/v1/channels', { key: CHANNEL_KEY });
    expect(scoped.status).toBe(200);
    expect(scoped.body.account).toBe('default');
    expect(scoped.body.channels.map((c) => c.channelId)).toEqual(['1000002']);

    const noAccount = await call(b.url, '/v1/channels', { key: ACCOUNT_KEY });
    expect(noAccount.status).toBe(403);
    expect(noAccount.body).toEqual(forbidden('acct-only', undefined, 'default'));
    const noKind = await call(b.url, '/v1/channels', { key: KIND_KEY });
    expect(noKind.body).toEqual(forbidden('watch-only', undefined, 'default'));
    const ownAccount = await call<{ channels: ChannelState[] }>(b.url, '/v1/accounts/partner/channels', { key: ACCOUNT_KEY });
    expect(ownAccount.status).toBe(200);
    expect(ownAccount.body.channels).toEqual([]);
  });

  // Runs last in this block (tests of a file run in order): it reads what the tests above collected.
  it('never puts a key (or its digest) in any response body or header of the tests above', () => {
    expect(bodies.length).toBeGreaterThan(40);
    const all = bodies.join('\n');
    for (const key of ALL_KEYS) expect(all).not.toContain(key);
  });
});

describe('authorize()', () => {
  const main: PolyvAccount = { name: 'main', appId: 'abc123', appSecret: 'x', channels: [] };
  const other: PolyvAccount = { name: 'other', appId: 'def456', appSecret: 'y', channels: [] };
  const resFor = (scope: Record<string, ReadonlySet<string>> | undefined) =>
    ({ locals: { consumer: scope === undefined ? { name: 'svc-a' } : { name: 'svc-a', scope } } }) as unknown as Response;

  it('when the kind is outside the scope, then it throws 403 forbidden naming consumer, kind, channel and account', () => {
    const res = resFor({ kinds: new Set(['channel']) });
    let thrown: unknown;
    try {
      authorize(res, { account: main, channelId: '123', kind: 'watch_api' });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(BrokerError);
    expect((thrown as BrokerError).status).toBe(403);
    expect((thrown as BrokerError).code).toBe('forbidden');
    expect((thrown as BrokerError).message).toBe('consumer svc-a may not read watch_api tokens of channel 123 in account main');
    expect(() => authorize(res, { account: main, channelId: '123', kind: 'channel' })).not.toThrow();
  });

  it('decides each dimension on its own, and an unscoped consumer may read everything', () => {
    const scoped = resFor({ accounts: new Set(['main']), channels: new Set(['123']), kinds: new Set(['common', 'watch_url']) });
    expect(mayAccess(scoped, { account: main, channelId: '123', kind: 'common' })).toBe(true);
    expect(mayAccess(scoped, { account: main, channelId: '123', kind: 'watch_url' })).toBe(true);
    expect(mayAccess(scoped, { account: other, channelId: '123', kind: 'common' })).toBe(false);
    expect(mayAccess(scoped, { account: main, channelId: '124', kind: 'common' })).toBe(false);
    expect(mayAccess(scoped, { account: main, channelId: '123', kind: 'channel' })).toBe(false);
    expect(mayAccess(scoped, { account: main, kind: 'common' })).toBe(true);
    expect(mayAccess(resFor(undefined), { account: other, channelId: '999', kind: 'watch_api' })).toBe(true);
  });
});
