import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimCall } from '../../src/sim/polyv-simulator.js';
import { auditWindow, describe as describeAudit, invariants, ZERO_VIOLATIONS, type Audit } from './support/audit.js';
import { LoadDriver, TOKENS_AND_STATE } from './support/consumers.js';
import { FAULT_KEY, Fleet, callsPerChannel, issues, metricSum, sleep, type ChildProc } from './support/fleet.js';
import { Figures, timeUntil } from './support/figures.js';

/**
 * Processes and Redis failing under consumer traffic: a worker SIGKILLed in the middle of a refresh, Redis
 * frozen (unreachable), Redis killed and restarted with its AOF, and killed and restarted empty.
 *
 * Timings: tokens live 30 s and are refreshed 20 s before expiry, so a refresh that is lost has 18 s (down
 * to the 2-s minimum TTL) to be recovered before any consumer could notice.
 */
const WARM = ['1000001', '1000002', '1000003', '1000004', '1000005', '1000006'];
/** In BROKER_CHANNELS but never read by consumers: only reconcile can bring them back after Redis loses its data. */
const QUIET = ['1000005', '1000006'];
/** Warmed with PUT at start-up (not in BROKER_CHANNELS) and read by consumers. */
const PUT_CHANNEL = '2000001';
/** Never read before the Redis outage: a cold request while Redis is away. */
const COLD = '2000002';
const TRAFFIC = [...WARM.filter((c) => !QUIET.includes(c)), PUT_CHANNEL];
const VICTIM = '1000004';
const EXPIRE_S = 30;
const REFRESH_BEFORE_S = 20;

const figures = new Figures('process and Redis faults');
let fleet: Fleet;
let driver: LoadDriver;

async function allCalls(): Promise<SimCall[]> {
  return fleet.channelTokenCalls();
}

async function audit(
  name: string,
  from: number,
  to: number,
  options: { supersededGraceMs?: number; redisAway?: { from: number; to: number } } = {},
): Promise<Audit> {
  await driver.checksDone();
  const a = auditWindow(driver, await allCalls(), { from, to, minTtlMs: fleet.minTtlMs, supersededGraceMs: options.supersededGraceMs ?? 1000, redisAway: options.redisAway });
  figures.add(describeAudit(name, a));
  return a;
}

/** The first get-channel-token call for `channelId` that arrives after `after`. */
async function nextCall(channelId: string, after: number, timeoutMs: number): Promise<SimCall> {
  let found: SimCall | undefined;
  await timeUntil(`a PolyV call for ${channelId}`, async () => {
    found = (await fleet.channelTokenCalls(channelId)).find((c) => c.at > after);
    return found !== undefined;
  }, timeoutMs, 20);
  return found!;
}

async function sumApiMetric(name: string, labels: Record<string, string>): Promise<number> {
  let sum = 0;
  for (const api of fleet.apis) sum += metricSum(await fleet.metrics(api), name, labels);
  return sum;
}

async function allReady(): Promise<boolean> {
  const codes = await Promise.all(fleet.brokers.map((p) => fleet.readyz(p)));
  return codes.every((c) => c === 200);
}

async function api(p: ChildProc, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${p.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${FAULT_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** Warm channels with a cached token, as an API replica lists them. */
async function warmWithToken(): Promise<Set<string>> {
  try {
    const res = await api(fleet.apis[0]!, 'GET', '/v1/channels');
    if (res.status !== 200) return new Set();
    const channels = res.body['channels'] as Array<{ channelId: string; expireTime: number | null }>;
    return new Set(channels.filter((c) => c.expireTime !== null && c.expireTime > Date.now()).map((c) => c.channelId));
  } catch {
    return new Set();
  }
}

/** Every channel in `channels` has had `n` tokens issued after `after`. */
async function issuedAfter(channels: readonly string[], after: number, n: number): Promise<boolean> {
  const byChannel = new Map<string, number>();
  for (const c of issues(await allCalls())) if (c.at > after && c.channelId !== undefined) byChannel.set(c.channelId, (byChannel.get(c.channelId) ?? 0) + 1);
  return channels.every((ch) => (byChannel.get(ch) ?? 0) >= n);
}

beforeAll(async () => {
  fleet = new Fleet({
    warmChannels: WARM,
    simChannels: [...WARM, PUT_CHANNEL, COLD],
    env: { BROKER_TOKEN_EXPIRE_SECONDS: String(EXPIRE_S), BROKER_REFRESH_BEFORE_SECONDS: String(REFRESH_BEFORE_S) },
  });
  await fleet.start();
  expect((await api(fleet.apis[0]!, 'PUT', `/v1/channels/${PUT_CHANNEL}`)).status).toBe(200);
  await timeUntil('every warm channel has a token', async () => (await warmWithToken()).size === WARM.length + 1, 15_000);
  driver = new LoadDriver({
    targets: fleet.apis.map((a) => a.url),
    channels: TRAFFIC,
    ratePerSec: 600,
    concurrency: 24,
    mix: TOKENS_AND_STATE,
    checkToken: (c, t) => fleet.checkToken(c, t),
  });
  driver.start();
  await sleep(2000);
});

afterAll(async () => {
  await driver?.close();
  await fleet?.stop();
  figures.print();
});

describe('a worker SIGKILLed in the middle of a refresh', () => {
  /**
   * Worker 2 is frozen so that worker 1 runs the victim's refresh; PolyV answers it slowly; worker 1 dies
   * while the call is in flight. BullMQ's stalled-job check on worker 2 must hand the job over.
   */
  async function killDuringRefresh(): Promise<{ call: SimCall; killedAt: number }> {
    const [w1, w2] = fleet.workers as [ChildProc, ChildProc];
    w2.pause();
    const armedAt = Date.now();
    await fleet.setFault({ kind: 'latency', ms: 2500, channelIds: [VICTIM], endpoints: ['get-channel-token'], times: 1 });
    let call: SimCall;
    try {
      call = await nextCall(VICTIM, armedAt, (EXPIRE_S - REFRESH_BEFORE_S + 5) * 1000);
    } finally {
      w2.resume();
    }
    await w1.kill();
    return { call, killedAt: Date.now() };
  }

  it('when the worker dies mid-call, then the other worker picks the job up within 15 s, with no extra PolyV call, and the token never runs out', async () => {
    const missBefore = await sumApiMetric('polyv_broker_refreshes_total', { trigger: 'miss' });
    const from = Date.now();
    const { call, killedAt } = await killDuringRefresh();
    const recoveredMs = await timeUntil('the victim refreshed again', async () => (await fleet.channelTokenCalls(VICTIM)).some((c) => c.at > killedAt), 40_000, 50);
    const recoveredAt = killedAt + recoveredMs;
    figures.add(`worker SIGKILL mid-refresh: job picked up again ${(recoveredMs / 1000).toFixed(1)} s after the kill`);
    await fleet.workers[0]!.start('/readyz');
    await sleep(1000);

    const victimCalls = (await fleet.channelTokenCalls(VICTIM)).filter((c) => c.at >= call.at && c.at <= recoveredAt + 1000);
    expect(victimCalls.length, 'the killed call and exactly one recovery call').toBe(2);
    expect(await sumApiMetric('polyv_broker_refreshes_total', { trigger: 'miss' }), 'no consumer had to fetch: the token never ran out').toBe(missBefore);

    // PolyV issued a token to the dead worker, invalidating the previous one, which the broker kept serving
    // until the recovered job replaced it: the window is reported, and bounded by the recovery.
    const a = await audit('worker kill #1', from, recoveredAt + 1000, { supersededGraceMs: recoveredMs + 1000 });
    expect(invariants(a)).toEqual(ZERO_VIOLATIONS);
    expect(a.supersededChannels.filter((c) => c !== VICTIM), 'only the victim was affected').toEqual([]);
    figures.add(`  token replaced at PolyV by the dead worker's call and still served: ${a.superseded} responses over ${(a.supersededMaxLagMs / 1000).toFixed(1)} s (until recovery)`);
  });

  it('when it happens again to the same channel, then its job still survives, and a consumer reporting the replaced token gets a valid one once the dead worker\'s lock lapses', async () => {
    const missBefore = await sumApiMetric('polyv_broker_refreshes_total', { trigger: 'miss' });
    const from = Date.now();
    const { call, killedAt } = await killDuringRefresh();
    // A consumer whose PolyV call failed with `invalid token.` reports the token it was served.
    const served = await api(fleet.apis[1]!, 'GET', `/v1/channels/${VICTIM}/token`);
    const servedToken = String(served.body['channelToken']);
    expect((await fleet.checkToken(VICTIM, servedToken)).valid, 'PolyV replaced it in the killed call').toBe(false);
    const reportedAt = Date.now();
    const fresh = await api(fleet.apis[2]!, 'POST', `/v1/channels/${VICTIM}/token/refresh`, { rejectedToken: servedToken });
    figures.add(`  report of the replaced token answered in ${Date.now() - reportedAt} ms`);
    expect(fresh.status).toBe(200);
    expect((await fleet.checkToken(VICTIM, String(fresh.body['channelToken']))).valid).toBe(true);
    const freshIssue = await nextCall(VICTIM, call.at, 1000);

    // The stalled job comes back, finds the token fresh (no call), and the channel stays on schedule.
    await fleet.workers[0]!.start('/readyz');
    const nextScheduledMs = await timeUntil('the victim refreshed on schedule again', async () => (await fleet.channelTokenCalls(VICTIM)).some((c) => c.at > freshIssue.at + 1000), (EXPIRE_S - REFRESH_BEFORE_S + 20) * 1000, 100);
    figures.add(`worker SIGKILL #2 on the same channel: next scheduled refresh ${(nextScheduledMs / 1000).toFixed(1)} s after the report`);
    const to = Date.now();
    const victimCalls = (await fleet.channelTokenCalls(VICTIM)).filter((c) => c.at >= call.at && c.at <= to);
    expect(victimCalls.length, 'killed call, the report, one scheduled refresh').toBe(3);
    expect(await sumApiMetric('polyv_broker_refreshes_total', { trigger: 'miss' })).toBe(missBefore);
    const a = await audit('worker kill #2', from, to, { supersededGraceMs: to - killedAt });
    expect(invariants(a)).toEqual(ZERO_VIOLATIONS);
    expect(await fleet.scheduleStates([VICTIM]), 'no lost channel: it is still scheduled').toEqual({ [VICTIM]: 'scheduled' });
  });
});

describe('Redis unreachable for a while (frozen with SIGSTOP: connections open, no answers)', () => {
  it('when Redis stops answering, then replicas keep serving still-valid tokens from memory, report not ready, and catch up when it returns', async () => {
    const OUTAGE_MS = 10_000;
    const from = Date.now();
    fleet.pauseRedis(true);
    const pausedAt = Date.now();
    let notReadyMs: number;
    let coldStatus: number;
    let coldMs: number;
    try {
      notReadyMs = await timeUntil('API replicas report not ready', async () => {
        const codes = await Promise.all(fleet.apis.map((p) => fleet.readyz(p)));
        return codes.every((c) => c === 503);
      }, OUTAGE_MS - 1000, 200);
      const coldStarted = Date.now();
      const cold = await api(fleet.apis[0]!, 'GET', `/v1/channels/${COLD}/token`).catch(() => ({ status: 0, body: {} }));
      coldMs = Date.now() - coldStarted;
      coldStatus = cold.status;
      await sleep(Math.max(0, pausedAt + OUTAGE_MS - Date.now()));
    } finally {
      fleet.pauseRedis(false);
    }
    const resumedAt = Date.now();
    const readyMs = await timeUntil('every process ready again', allReady, 30_000, 100);
    // Catching up: every channel whose refresh fell due during the outage has a fresh token.
    const catchUpMs = await timeUntil('refreshes caught up', () => issuedAfter([...WARM, PUT_CHANNEL], pausedAt + 1, 1), 30_000, 200);
    const to = Date.now();
    const during = await audit('Redis frozen (during)', pausedAt, resumedAt);
    const whole = await audit('Redis frozen (whole)', from, to);
    figures.add(
      `Redis frozen ${OUTAGE_MS / 1000} s: API replicas not ready after ${(notReadyMs / 1000).toFixed(1)} s; cold request → ${coldStatus} in ${coldMs} ms; ` +
        `ready again ${(readyMs / 1000).toFixed(1)} s after Redis returned; refreshes caught up ${(catchUpMs / 1000).toFixed(1)} s after`,
    );
    expect(coldStatus, 'no token anywhere for a cold channel: 503').toBe(503);
    expect(during.tokenResponses, 'tokens kept flowing').toBeGreaterThan(0);
    expect(during.tokenReadsNot200, 'every read of a channel with a valid token answered from memory').toBe(0);
    expect(invariants(whole)).toEqual(ZERO_VIOLATIONS);
  });
});

describe('Redis killed (SIGKILL) and restarted', () => {
  it('when it comes back with its AOF, then replicas reconnect without a restart and every token and warm channel is still there', async () => {
    const before = await warmWithToken();
    const from = Date.now();
    await fleet.killRedis();
    const killedAt = Date.now();
    await sleep(4000);
    await fleet.startRedis({ fresh: false });
    const restartedAt = Date.now();
    const readyMs = await timeUntil('every process ready again', allReady, 30_000, 100);
    const after = await warmWithToken();
    await sleep(3000);
    const to = Date.now();
    figures.add(`Redis SIGKILL + restart with AOF after ${((restartedAt - killedAt) / 1000).toFixed(1)} s: all ready ${(readyMs / 1000).toFixed(1)} s after restart`);
    expect([...after].sort()).toEqual([...before].sort());
    expect(fleet.describeProblems()).toBe('');
    // Until every replica has read Redis again, one may still serve from memory the token it served last.
    const redisAway = { from: killedAt, to: restartedAt + readyMs + 1000 };
    expect(invariants(await audit('Redis killed, AOF restart', from, to, { redisAway, supersededGraceMs: redisAway.to - killedAt }))).toEqual(ZERO_VIOLATIONS);
  });

  it('when it comes back empty, then warm channels are rebuilt and refreshed, and replicas reconnect without a restart', async () => {
    const from = Date.now();
    await fleet.killRedis();
    const killedAt = Date.now();
    await sleep(4000);
    await fleet.startRedis({ fresh: true });
    const restartedAt = Date.now();
    const readyMs = await timeUntil('every process ready again', allReady, 30_000, 100);
    // BROKER_CHANNELS come back through reconcile (QUIET has no traffic); the PUT channel through its readers.
    const rebuiltMs = await timeUntil('warm channels rebuilt', async () => {
      const warm = await warmWithToken();
      return [...WARM, PUT_CHANNEL].every((c) => warm.has(c));
    }, 30_000, 100);
    const refreshedMs = await timeUntil('rebuilt channels refreshed on schedule', () => issuedAfter(WARM, restartedAt, 2), (EXPIRE_S + 10) * 1000, 200);
    const to = Date.now();
    figures.add(
      `Redis SIGKILL + restart empty after ${((restartedAt - killedAt) / 1000).toFixed(1)} s: all ready ${(readyMs / 1000).toFixed(1)} s, ` +
        `warm channels rebuilt ${(rebuiltMs / 1000).toFixed(1)} s, refreshed on schedule ${(refreshedMs / 1000).toFixed(1)} s after restart`,
    );
    const redisAway = { from: killedAt, to: restartedAt + readyMs + 1000 };
    expect(invariants(await audit('Redis killed, empty restart', from, to, { redisAway, supersededGraceMs: redisAway.to - killedAt }))).toEqual(ZERO_VIOLATIONS);
  });
});

describe('the whole run', () => {
  it('never exceeded a channel budget, crashed a process or logged an unhandled error, and every process stops cleanly', async () => {
    await driver.stop();
    const perChannel = callsPerChannel(await allCalls());
    figures.add(`PolyV calls per channel (budget ${fleet.budgetPerHour}/h): ${JSON.stringify(Object.fromEntries(perChannel))}`);
    for (const n of perChannel.values()) expect(n).toBeLessThanOrEqual(fleet.budgetPerHour);
    expect(fleet.describeProblems()).toBe('');
    expect(fleet.leakedTokens(driver.tokens), 'tokens in the logs').toEqual([]);
    const scheduled = await fleet.scheduleStates([...WARM, PUT_CHANNEL]);
    expect(Object.entries(scheduled).filter(([, state]) => state !== 'scheduled'), 'every warm channel is still scheduled').toEqual([]);
    for (const p of fleet.brokers) await p.stop();
    for (const p of fleet.brokers) expect(p.stopExitCodes.at(-1), `${p.name} exit code`).toBe(0);
    const errors = fleet.brokers.flatMap((p) => [...p.errorLines].map(([m, n]) => `${p.name}: ${m} ×${n} (first: ${p.errorSamples.get(m)})`));
    figures.add(`error-level log lines: ${errors.length === 0 ? 'none' : errors.join('; ')}`);
    expect(errors).toEqual([]);
  });
});
