import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/lib/clock.js';
import { createLogger } from '../src/lib/logger.js';
import { CONFIG_ERROR_RETRY_MS, processRefresh } from '../src/scheduler/refresh-processor.js';
import { ACCOUNT_RETRY_MS } from '../src/store/call-budget.js';
import { api, testConfig, uniquePrefix, useSimulator, type ErrorBody, type TestBroker } from './support/harness.js';

/**
 * A wrong appSecret is a fact about the account, not about one channel or one read: it is recorded once in
 * Redis and every read path of every kind, on every replica, answers from that record until the next probe.
 * Brokers and simulator share one manual clock, so five minutes pass in an instant.
 */
const clock = new ManualClock(Date.now());
const fx = useSimulator({ clock });
const silent = createLogger('silent');
const WRONG_SECRET = 'wrong-secret-value-0123456789';
const CHANNELS = ['1000001', '1000002', '1000003'];

async function replicas(n: number, env: Record<string, string>): Promise<TestBroker[]> {
  const prefix = uniquePrefix();
  const config = () => testConfig(fx.sim.url, { BROKER_ROLE: 'api', BROKER_REDIS_PREFIX: prefix, BROKER_WATCH_URL_POOL: '0', ...env });
  return Promise.all(Array.from({ length: n }, () => fx.broker(config(), { clock })));
}

/** One read of each kind on `channelId`; returns the statuses and error codes. */
async function readEveryKind(base: string, channelId: string): Promise<Array<{ status: number; code: string | undefined; retryAfter: number }>> {
  const answers = await Promise.all([
    api<ErrorBody>(base, `/v1/channels/${channelId}/token`),
    api<ErrorBody>(base, `/v1/channels/${channelId}/token?disposable=true`),
    api<ErrorBody>(base, `/v1/channels/${channelId}/watch-tokens`, { method: 'POST', body: { viewerId: 'viewer-1' } }),
    api<ErrorBody>(base, `/v1/channels/${channelId}/common-token`),
    api<ErrorBody>(base, `/v1/channels/${channelId}/watch-urls`, { method: 'POST' }),
  ]);
  return answers.map((r) => ({ status: r.status, code: r.body?.error?.code, retryAfter: Number(r.headers.get('retry-after')) }));
}

/** Reads every kind on every channel on every replica, `rounds` times, one round after the other. */
async function readAll(brokers: readonly TestBroker[], rounds: number) {
  const out: Array<{ status: number; code: string | undefined; retryAfter: number }> = [];
  for (let round = 0; round < rounds; round++) {
    for (const b of brokers) for (const ch of CHANNELS) out.push(...(await readEveryKind(b.url, ch)));
  }
  return out;
}

describe('a wrong appSecret is recorded for the account, not hammered from the read path', () => {
  it('when two replicas serve all four kinds on several channels with a wrong secret, then PolyV is called at most once per account per 5 minutes, and every read gets 503 upstream_auth_failed with Retry-After', async () => {
    clock.set(Date.now());
    const brokers = await replicas(2, { POLYV_APP_SECRET: WRONG_SECRET });

    // First window: the first read's call fails and is recorded (calls already under way when that answer
    // arrives are not recalled, so this one goes alone); then 2 replicas x 3 channels x 5 kinds x 4 rounds,
    // five reads at a time.
    expect((await api<ErrorBody>(brokers[0]!.url, '/v1/channels/1000001/token')).body.error.code).toBe('upstream_auth_failed');
    const first = await readAll(brokers, 4);
    expect(first).toHaveLength(120);
    for (const r of first) {
      expect(r.status).toBe(503);
      expect(r.code).toBe('upstream_auth_failed');
      expect(r.retryAfter).toBeGreaterThanOrEqual(1);
    }
    expect(fx.sim.calls()).toHaveLength(1);
    // Retry-After says when the probe is due: about 5 minutes.
    expect(Math.min(...first.map((r) => r.retryAfter))).toBeGreaterThan(ACCOUNT_RETRY_MS / 1000 - 5);

    // Just before the 5 minutes are up: still nothing goes out.
    clock.advance(ACCOUNT_RETRY_MS - 1000);
    await readAll(brokers, 1);
    expect(fx.sim.calls()).toHaveLength(1);

    // After them: exactly one probe across both replicas and all kinds, which fails and is recorded again.
    clock.advance(2000);
    const second = await readAll(brokers, 2);
    expect(second.every((r) => r.status === 503 && r.code === 'upstream_auth_failed')).toBe(true);
    expect(fx.sim.calls()).toHaveLength(2);

    // Three more windows: one call each.
    for (let w = 0; w < 3; w++) {
      clock.advance(ACCOUNT_RETRY_MS + 1000);
      await readAll(brokers, 1);
    }
    expect(fx.sim.calls()).toHaveLength(5);
  });

  it('when the secret is corrected (replicas restarted with it), then the first read of each kind gets a token at its first PolyV call', async () => {
    clock.set(Date.now());
    const prefix = uniquePrefix();
    const env = { BROKER_ROLE: 'api', BROKER_REDIS_PREFIX: prefix, BROKER_WATCH_URL_POOL: '0' };
    const wrong = await fx.broker(testConfig(fx.sim.url, { ...env, POLYV_APP_SECRET: WRONG_SECRET }), { clock });
    expect((await readEveryKind(wrong.url, '1000001')).every((r) => r.code === 'upstream_auth_failed')).toBe(true);
    await wrong.stop();
    fx.sim.resetCalls();

    const fixed = await fx.broker(testConfig(fx.sim.url, env), { clock });
    const answers = await readEveryKind(fixed.url, '1000001');
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(fx.sim.calls()).toHaveLength(5);
    expect(fx.sim.calls().every((c) => c.code === 200)).toBe(true);
  });

  it('when on-call forces a refresh while the account is recorded as failing, then one try goes out, and its success clears the record', async () => {
    clock.set(Date.now());
    const [b] = await replicas(1, {});
    const account = b!.app.accounts.defaultAccount;
    // Recorded as failing (by a replica with these same credentials, say, before PolyV was fixed).
    fx.sim.setFault({ kind: 'error-code', code: 403, message: 'invalid signature.', times: 1 });
    expect((await api<ErrorBody>(b!.url, '/v1/channels/1000001/token')).body.error.code).toBe('upstream_auth_failed');
    expect((await api<ErrorBody>(b!.url, '/v1/channels/1000002/token')).body.error.code).toBe('upstream_auth_failed');
    expect(fx.sim.calls()).toHaveLength(1);

    const token = await b!.app.service.forceRefresh(account, '1000002');
    expect(token.token).not.toBe('');
    expect(fx.sim.calls()).toHaveLength(2);
    expect(await b!.app.budget.readAccountFailure(account.appId)).toBeNull();
    expect((await api(b!.url, '/v1/channels/1000001/token')).status).toBe(200);
  });
});

describe('retryability survives the trip through Redis to another replica', () => {
  it('when two replicas refresh one channel at once with a wrong secret, then the one that waited on the lock backs off 5 minutes too', async () => {
    clock.set(Date.now());
    const brokers = await replicas(2, { POLYV_APP_SECRET: WRONG_SECRET });
    const account = brokers[0]!.app.accounts.defaultAccount;
    await brokers[0]!.app.warmSet.addIfAbsent(account.appId, '1000003', Date.now());
    // PolyV answers slowly, so the second replica finds the lock held and waits for the first one's outcome.
    fx.sim.setFault({ kind: 'latency', ms: 300 });
    const decisions = await Promise.all(
      brokers.map((b) =>
        processRefresh(
          { accounts: b.app.accounts, service: b.app.service, store: b.app.store, clock, logger: silent, random: () => 0.5 },
          { appId: account.appId, channelId: '1000003' },
        ),
      ),
    );
    expect(fx.sim.calls()).toHaveLength(1);
    // Both runs back off 5 minutes; the channel's failures in a row are counted in Redis, once per run.
    expect(decisions.map((d) => d.kind === 'next' && d.at)).toEqual([clock.now() + CONFIG_ERROR_RETRY_MS, clock.now() + CONFIG_ERROR_RETRY_MS]);
    expect(decisions.map((d) => d.kind === 'next' && d.failures).sort()).toEqual([1, 2]);
    const state = await brokers[1]!.app.service.describe(account, '1000003');
    expect(state.lastError?.code).toBe('upstream_auth_failed');
  });
});
