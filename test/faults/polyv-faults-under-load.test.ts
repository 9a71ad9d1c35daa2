import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimFault } from '../../src/sim/polyv-simulator.js';
import { auditWindow, describe as describeAudit, invariants, ZERO_VIOLATIONS, type Audit } from './support/audit.js';
import { LoadDriver, MIXED } from './support/consumers.js';
import { Fleet, callsPerChannel, issues, metricSum, sleep } from './support/fleet.js';
import { Figures, timeUntil } from './support/figures.js';
import { Sampler } from './support/sampler.js';

/**
 * Load: about two minutes of mixed traffic at a few thousand requests per second across three API
 * replicas, while PolyV fails in every way it can, one fault after the other.
 *
 * Timings: tokens live 20 s and are refreshed 14 s before expiry, so a refresh cycle is 6 s (4.6 s at the
 * earliest, with jitter). Each fault lasts 7.5 s: longer than a refresh cycle, so every channel's refresh
 * meets it, and shorter than a token's life, so no warm channel runs out of a valid token.
 */
const WARM = ['1000001', '1000002', '1000003', '1000004', '1000005', '1000006', '1000007', '1000008'];
const RATE_PER_SEC = 3000;
const FAULT_MS = 7500;
const POLYV_TIMEOUT_MS = 1000;

const FAULTS: ReadonlyArray<{ name: string; fault: SimFault; refreshesFail: boolean }> = [
  { name: 'answers HTTP 502 (gateway)', fault: { kind: 'http-status', status: 502 }, refreshesFail: true },
  { name: 'answers code 500 (server error)', fault: { kind: 'error-code', code: 500, message: '' }, refreshesFail: true },
  { name: 'says `qps exceeds` (rate limited)', fault: { kind: 'error-code', code: 400, message: 'qps exceeds number of calls, limit: 500' }, refreshesFail: true },
  { name: 'says `invalid timestamp.` (clock skew)', fault: { kind: 'error-code', code: 400, message: 'invalid timestamp.' }, refreshesFail: true },
  { name: 'hangs past the timeout', fault: { kind: 'hang' }, refreshesFail: true },
  { name: 'resets connections', fault: { kind: 'reset' }, refreshesFail: true },
  { name: 'answers unreadable JSON', fault: { kind: 'bad-json' }, refreshesFail: true },
  { name: 'is slow (800 ms, under the timeout)', fault: { kind: 'latency', ms: 800 }, refreshesFail: false },
];

const figures = new Figures('PolyV faults under load');
let fleet: Fleet;
let driver: LoadDriver;
let sampler: Sampler;
let loadStartedAt = 0;

async function audit(name: string, from: number, to: number, supersededGraceMs = 1000): Promise<Audit> {
  await driver.checksDone();
  const a = auditWindow(driver, await fleet.channelTokenCalls(), { from, to, minTtlMs: fleet.minTtlMs, supersededGraceMs });
  figures.add(describeAudit(name, a));
  return a;
}

beforeAll(async () => {
  fleet = new Fleet({ warmChannels: WARM, simChannels: WARM, env: { POLYV_TIMEOUT_MS: String(POLYV_TIMEOUT_MS) } });
  await fleet.start();
  driver = new LoadDriver({
    targets: fleet.apis.map((a) => a.url),
    channels: WARM,
    ratePerSec: RATE_PER_SEC,
    concurrency: 64,
    mix: MIXED,
    checkToken: (c, t) => fleet.checkToken(c, t),
  });
  sampler = new Sampler(fleet);
  sampler.start();
  loadStartedAt = Date.now();
  driver.start();
  await sleep(10_000);
});

afterAll(async () => {
  sampler?.stop();
  await driver?.close();
  await fleet?.stop();
  figures.print();
});

describe('PolyV fails for longer than a refresh cycle, shorter than a token life', () => {
  for (const { name, fault, refreshesFail } of FAULTS) {
    it(`when PolyV ${name}, then consumers keep getting valid tokens at unchanged latency, and refreshes resume by themselves`, async () => {
      const baseline = await audit(`  baseline before "${name}"`, Date.now() - 5000, Date.now());
      // The window of the fault is taken inside the admin calls: the simulator has applied the fault when
      // setFault answers, and still applies it when clearFault is sent (calls in between are answered
      // normally and must not count as calls during the fault).
      await fleet.setFault({ ...fault, endpoints: ['get-channel-token'] });
      const faultAt = Date.now();
      await sleep(FAULT_MS);
      const clearingAt = Date.now();
      await fleet.clearFault();
      const clearedAt = Date.now();
      const during = (await fleet.channelTokenCalls()).filter((c) => c.at >= faultAt && c.at < clearingAt);

      // Refreshes resume by themselves: every channel gets a new token after the fault (for the slow
      // PolyV: during it). Waited for before any assertion, so that a failure here leaves the next
      // scenario a recovered fleet.
      const since = refreshesFail ? clearedAt : faultAt;
      const resumedMs = await timeUntil(
        'every channel refreshed again',
        async () => {
          const got = new Set(issues(await fleet.channelTokenCalls()).filter((c) => c.at > since).map((c) => c.channelId));
          return WARM.every((c) => got.has(c));
        },
        30_000,
        200,
      );
      await sleep(500);

      // Every channel's refresh met the fault; after `qps exceeds` the fleet pauses instead (issue 9): the
      // first refusal stops every other call until the pause's probe, so only the channels already under way
      // meet it, and the pause holds (in the fleet's short BROKER_UPSTREAM_PAUSE_SECONDS).
      const faultedChannels = new Set(during.filter((c) => c.faulted).map((c) => c.channelId));
      if (fault.kind === 'error-code' && fault.message.startsWith('qps exceeds')) {
        expect(faultedChannels.size, 'the pause let no channel call PolyV again and again').toBeGreaterThan(0);
        expect(during.length, 'calls during the fault: about one per pause and its probe').toBeLessThan(WARM.length * 2);
      } else {
        expect(WARM.filter((c) => !faultedChannels.has(c)), 'channels whose refresh never met the fault').toEqual([]);
      }
      if (refreshesFail) expect(issues(during).length, 'no token issued while PolyV fails').toBe(0);

      const a = await audit(`PolyV ${name}`, faultAt, Date.now(), fault.kind === 'latency' ? fault.ms + 1000 : 1000);
      figures.add(`  refreshes resumed: every channel had a new token ${(resumedMs / 1000).toFixed(1)} s after ${refreshesFail ? 'the fault ended' : 'the fault began'}`);

      expect(invariants(a)).toEqual(ZERO_VIOLATIONS);
      expect(a.byStatus['503'] ?? 0, 'no 503: every warm channel had a valid token throughout').toBe(0);
      // Unchanged latency: nobody waited for PolyV (a hang costs POLYV_TIMEOUT_MS).
      expect(a.p99Ms).toBeLessThan(Math.max(4 * baseline.p99Ms, 150));
      expect(a.maxMs).toBeLessThan(POLYV_TIMEOUT_MS);
    });
  }
});

describe('load', () => {
  it('over the whole run: a few thousand requests per second, no 5xx, memory flat, event-loop lag bounded', async () => {
    await sleep(8000);
    await driver.stop();
    const loadEndedAt = Date.now();
    sampler.stop();
    const a = await audit('whole load run', loadStartedAt, loadEndedAt, 1800);
    const warmUpEnd = loadStartedAt + 10_000;
    const rss = sampler.rssDrift(warmUpEnd);
    const lag = sampler.lag(loadStartedAt);
    figures.add(`load: ${a.responses} requests in ${a.windowSeconds.toFixed(0)} s = ${a.ratePerSec} req/s across ${fleet.apis.length} API replicas; token read p50 ${a.p50Ms} ms, p99 ${a.p99Ms} ms, max ${a.maxMs} ms`);
    figures.add(`RSS first third → last third (MB): ${rss.map((r) => `${r.name} ${r.firstMb} → ${r.lastMb} (${r.driftPct >= 0 ? '+' : ''}${r.driftPct}%)`).join(', ')}`);
    figures.add(`event-loop lag p99 per scrape (ms): ${lag.map((l) => `${l.name} median ${l.medianP99Ms}, max ${l.maxP99Ms}`).join('; ')}`);
    let belowMinTtl = 0;
    for (const p of fleet.apis) belowMinTtl += metricSum(await fleet.metrics(p), 'polyv_broker_tokens_served_below_min_ttl_total');
    const perChannel = callsPerChannel(await fleet.channelTokenCalls());
    figures.add(`PolyV calls per channel (budget ${fleet.budgetPerHour}/h): ${JSON.stringify(Object.fromEntries(perChannel))}`);

    expect(a.ratePerSec).toBeGreaterThan(2000);
    expect(invariants(a)).toEqual(ZERO_VIOLATIONS);
    expect(belowMinTtl, 'polyv_broker_tokens_served_below_min_ttl_total').toBe(0);
    for (const n of perChannel.values()) expect(n).toBeLessThanOrEqual(fleet.budgetPerHour);
    for (const r of rss) expect(r.lastMb, `${r.name} RSS grows`).toBeLessThan(r.firstMb * 1.25 + 10);
    for (const l of lag) expect(l.maxP99Ms, `${l.name} event-loop lag`).toBeLessThan(250);
    expect(fleet.describeProblems()).toBe('');
    expect(fleet.leakedTokens(driver.tokens), 'tokens in the logs').toEqual([]);
    for (const p of fleet.brokers) await p.stop();
    for (const p of fleet.brokers) expect(p.stopExitCodes.at(-1), `${p.name} exit code`).toBe(0);
    const errors = fleet.brokers.flatMap((p) => [...p.errorLines].map(([m, n]) => `${p.name}: ${m} ×${n}`));
    figures.add(`error-level log lines: ${errors.length === 0 ? 'none' : errors.join('; ')}`);
  });
});
