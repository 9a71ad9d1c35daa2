import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/lib/clock.js';
import { createLogger } from '../src/lib/logger.js';
import { CONFIG_ERROR_RETRY_MS, RETRY_CAP_MS, processRefresh } from '../src/scheduler/refresh-processor.js';
import type { SimFault } from '../src/sim/polyv-simulator.js';
import { api, testConfig, useSimulator, type TestBroker, type ErrorBody } from './support/harness.js';


const silent = createLogger('silent');
const fx = useSimulator();
function broker(env: Record<string, string> = {}, clock?: ManualClock): Promise<TestBroker> {
  return fx.broker(testConfig(fx.sim.url, { BROKER_ROLE: 'api', POLYV_TIMEOUT_MS: '400', ...env }), clock ? { clock } : {});
}

describe('upstream failures on a cold channel are classified as ERRORS-AND-LIMITS.md says', () => {
  const cases: Array<[string, string, number, SimFault]> = [
    ['PolyV code 500 (status fail)', 'upstream_unavailable', 1, { kind: 'error-code', code: 500, message: '' }],
    ['HTTP 502 without JSON', 'upstream_unavailable', 1, { kind: 'http-status', status: 502 }],
    ['qps exceeds (code 400)', 'upstream_rate_limited', 1, { kind: 'error-code', code: 400, message: 'qps exceeds number of calls, limit: 500' }],
    ['invalid timestamp twice', 'upstream_clock_skew', 2, { kind: 'error-code', code: 400, message: 'invalid timestamp.' }],
    ['invalid signature', 'upstream_auth_failed', 1, { kind: 'error-code', code: 403, message: 'invalid signature.' }],
    ['application not found', 'upstream_auth_failed', 1, { kind: 'error-code', code: 400, message: 'application not found.' }],
    ['param validate error', 'upstream_bad_request', 1, { kind: 'error-code', code: 400, message: 'param validate error' }],
    ['connection reset', 'upstream_unavailable', 1, { kind: 'reset' }],
    ['a body that is not JSON', 'upstream_bad_response', 1, { kind: 'bad-json' }],
    ['a hang past the timeout', 'upstream_unavailable', 1, { kind: 'hang' }],
  ];
  it.each(cases)('%s → 503 %s with Retry-After, after %i call(s)', async (_name, code, expectedCalls, fault) => {
    const b = await broker();
    fx.sim.setFault(fault);
    const res = await api<ErrorBody>(b.url, '/v1/channels/1000001/token');
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe(code);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(fx.sim.calls({ endpoint: 'get-channel-token' })).toHaveLength(expectedCalls);
    // the error is recorded for on-call
    const state = await b.app.service.describe(b.app.accounts.defaultAccount, '1000001');
    expect(state.lastError?.code).toBe(code);
  });
});

describe('the refresh job decides its next run from the failure', () => {
  async function decide(fault: SimFault | null, env: Record<string, string> = {}) {
    const clock = new ManualClock(Date.now());
    const b = await broker(env, clock);
    const account = b.app.accounts.defaultAccount;
    await b.app.warmSet.addIfAbsent(account.appId, '1000002', Date.now());
    // Two failed runs before this one (counted in the channel's status).
    for (let i = 0; i < 2; i += 1) await b.app.store.countRefreshFailure(account.appId, '1000002');
    fx.sim.setFault(fault);
    const decision = await processRefresh(
      { accounts: b.app.accounts, service: b.app.service, store: b.app.store, clock, logger: silent, random: () => 0.5 },
      { appId: account.appId, channelId: '1000002' },
    );
    return { decision, now: clock.now(), b, account };
  }

  it('success → next run at expireTime - refreshBefore - jitter, failures reset', async () => {
    const { decision, b, account } = await decide(null);
    const token = await b.app.store.read(account.appId, '1000002');
    expect(decision).toEqual({ kind: 'next', at: token!.expireTime - 300_000 - 15_000, failures: 0 });
  });

  it('transient failure → exponential backoff with jitter (third failure: 1 s + half of 3 s)', async () => {
    const { decision, now } = await decide({ kind: 'http-status', status: 503 });
    expect(decision).toEqual({ kind: 'next', at: now + 1000 + 1500, failures: 3 });
  });

  it('bad credentials → retried only after 5 minutes', async () => {
    const { decision, now } = await decide({ kind: 'error-code', code: 403, message: 'invalid signature.' });
    expect(decision).toEqual({ kind: 'next', at: now + CONFIG_ERROR_RETRY_MS, failures: 3 });
  });

  it('budget spent → waits until a slot frees', async () => {
    const { decision, now } = await decide(null, { BROKER_CHANNEL_BUDGET_PER_HOUR: '1' }).then(async (first) => {
      // the first refresh used the only slot; force another
      await first.b.app.store.forget(first.account.appId, '1000002');
      const again = await processRefresh(
        {
          accounts: first.b.app.accounts,
          service: first.b.app.service,
          store: first.b.app.store,
          clock: { now: () => first.now },
          logger: silent,
          random: () => 0,
        },
        { appId: first.account.appId, channelId: '1000002' },
      );
      return { decision: again, now: first.now };
    });
    expect(decision.kind).toBe('next');
    expect(decision.kind === 'next' && decision.at - now).toBeGreaterThan(RETRY_CAP_MS);
  });

  it('channel not in the account → the job ends and the channel is no longer warm', async () => {
    const clock = new ManualClock(Date.now());
    const b = await broker({}, clock);
    const account = b.app.accounts.defaultAccount;
    await b.app.warmSet.addIfAbsent(account.appId, '9999999', Date.now());
    const decision = await processRefresh(
      { accounts: b.app.accounts, service: b.app.service, store: b.app.store, clock, logger: silent },
      { appId: account.appId, channelId: '9999999' },
    );
    expect(decision).toEqual({ kind: 'done', reason: 'channel not in account' });
    expect((await b.app.warmSet.entry(account.appId, '9999999')) !== null).toBe(false);
  });
});
