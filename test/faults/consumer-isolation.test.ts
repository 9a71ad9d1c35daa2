import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimCall } from '../../src/sim/polyv-simulator.js';
import { RedisKeys } from '../../src/store/redis-keys.js';
import { auditWindow, describe as describeAudit, invariants, ZERO_VIOLATIONS } from './support/audit.js';
import { atFullSpeed, ConsumerClient } from './support/consumer-client.js';
import { LoadDriver, TOKENS_ONLY } from './support/consumers.js';
import { Fleet, callsPerChannel, issues, metricSum, sleep } from './support/fleet.js';
import { Figures, timeUntil } from './support/figures.js';

/**
 * Issue 9: no consumer can starve a channel. The consumer-protection policies that the other fault files turn
 * off are on here.
 *
 * A. Two API replicas and a worker, 20 s tokens, a budget of 30 calls per channel and hour of which 10 are the
 *    proactive refresh's alone, 8 PolyV calls per consumer and channel. For three token lifetimes, consumer
 *    `looper` asks for disposable tokens of channel A and consumer `reporter` reports every token of channel B it
 *    gets, both at full speed on both replicas; consumer `reader` reads both channels throughout and every token
 *    it gets is checked against the simulator.
 * B. Three API replicas, a worker and 20 warm channels. PolyV says `qps exceeds` once: the fleet stops calling
 *    PolyV for BROKER_UPSTREAM_PAUSE_SECONDS, readers are served throughout, then one probe goes out (the
 *    simulator holds its answer back for a moment) and only after its answer do refreshes resume.
 */

const figures = new Figures('consumer isolation');
/** A counter summed over the scrapes of several processes. */
const total = (scrapes: ReadonlyArray<Map<string, number>>, name: string, labels: Record<string, string> = {}) =>
  scrapes.reduce((n, m) => n + metricSum(m, name, labels), 0);

// ------------------------------------------------------------------------------------------ A

const A = '1000001';
const B = '1000002';
const BUDGET = 30;
const RESERVE = 10;
const QUOTA = 8;
const REPORT_MIN_AGE_S = 3;
/** Full-speed loops per misbehaving consumer, spread over the replicas. */
const LOOPS = 4;
const KEYS = {
  looper: 'looper-key-0123456789-abcdefgh',
  reporter: 'reporter-key-0123456789-abcdefgh',
  reader: 'reader-key-0123456789-abcdefgh',
} as const;

describe('A: a consumer looping disposable tokens and one reporting every token cannot starve a channel', () => {
  let fleet: Fleet;

  beforeAll(async () => {
    fleet = new Fleet({
      warmChannels: [A, B],
      simChannels: [A, B],
      apiReplicas: 2,
      workers: 1,
      consumers: KEYS,
      env: {
        // Every disposable call must succeed for the looper's count to be exact, even on a busy machine.
        POLYV_TIMEOUT_MS: '3000',
        BROKER_CHANNEL_BUDGET_PER_HOUR: String(BUDGET),
        BROKER_REFRESH_RESERVE_PER_HOUR: String(RESERVE),
        BROKER_CONSUMER_UPSTREAM_PER_HOUR: String(QUOTA),
        BROKER_REPORT_MIN_AGE_SECONDS: String(REPORT_MIN_AGE_S),
      },
    });
    await fleet.start();
    await timeUntil('both channels warm', async () => new Set(issues(await fleet.channelTokenCalls()).map((c) => c.channelId)).size === 2, 15_000);
  });

  afterAll(async () => {
    await fleet?.stop();
  });

  it(`when "looper" loops disposable tokens of A and "reporter" reports every token of B at full speed for three token lifetimes, then "reader" gets a valid token every time, the loopers get 429 upstream_quota_exceeded and never a 503, and no channel exceeds its budget`, async () => {
    const targets = fleet.apis.map((p) => p.url);
    const reader = new LoadDriver({
      targets,
      channels: [A, B],
      ratePerSec: 60,
      concurrency: 4,
      mix: { get: 1 },
      checkToken: (c, t) => fleet.checkToken(c, t),
      apiKey: KEYS.reader,
    });
    const looper = new ConsumerClient('looper', KEYS.looper, targets);
    const reporter = new ConsumerClient('reporter', KEYS.reporter, targets);
    const held: Array<string | undefined> = [];
    /** The simulator's verdict on each disposable token, asked as it arrives. */
    const disposableChecks: Array<Promise<{ valid: boolean; reason?: string }>> = [];
    try {
      const readFrom = Date.now();
      reader.start();
      await sleep(500);
      const from = Date.now();
      const until = from + 3 * fleet.expireSeconds * 1000;
      await Promise.all([
        atFullSpeed(LOOPS, until, async (loop) => {
          const answer = await looper.get(loop, `/v1/channels/${A}/token?disposable=true`);
          if (answer.token !== undefined) disposableChecks.push(fleet.checkToken(A, answer.token));
        }),
        atFullSpeed(LOOPS, until, async (loop) => {
          const token = held[loop];
          const answer =
            token === undefined
              ? await reporter.get(loop, `/v1/channels/${B}/token`)
              : await reporter.post(loop, `/v1/channels/${B}/token/refresh`, { rejectedToken: token });
          if (answer.token !== undefined) held[loop] = answer.token;
        }),
      ]);
      await sleep(500);
      await reader.stop();
      await reader.checksDone();
      const loopedFor = (Date.now() - from) / 1000;

      const calls = await fleet.channelTokenCalls();
      const perChannel = callsPerChannel(calls);
      const disposableCalls = calls.filter((c) => c.channelId === A && c.params['disposable'] === 'true');
      const metrics = await Promise.all(fleet.brokers.map((p) => fleet.metrics(p)));
      const caused = (labels: Record<string, string>) => total(metrics, 'polyv_broker_upstream_calls_caused_total', labels);
      const requests = (labels: Record<string, string>) => total(metrics, 'polyv_broker_requests_total', labels);
      const audit = auditWindow(reader, calls, { from: readFrom, to: Date.now(), minTtlMs: fleet.minTtlMs, supersededGraceMs: 1000 });
      const verdicts = new Map<string, number>();
      for (const t of reader.tokens) {
        const v = t.check?.valid === true ? 'valid' : (t.check?.reason ?? 'unchecked');
        verdicts.set(v, (verdicts.get(v) ?? 0) + 1);
      }
      const disposableVerdicts = await Promise.all(disposableChecks);

      figures.add(
        `A: looper ${looper.total} requests in ${loopedFor.toFixed(0)} s over ${LOOPS} loops on ${targets.length} replicas [${looper.describe()}], ` +
          `first 429 after ${((looper.firstTooManyAt - from) / 1000).toFixed(1)} s, Retry-After ${looper.retryAfterMin}-${looper.retryAfterMax} s; PolyV calls for A: ${perChannel.get(A) ?? 0} of ${BUDGET} ` +
          `(${disposableCalls.length} disposable = its quota of ${QUOTA}, ${caused({ consumer: '-', reason: 'scheduled' }) > 0 ? 'the rest scheduled' : 'none scheduled'})`,
      );
      figures.add(
        `B: reporter ${reporter.total} requests [${reporter.describe()}], of the 200s ${requests({ consumer: 'reporter', outcome: 'report_too_soon' })} report_too_soon, ` +
          `first 429 after ${((reporter.firstTooManyAt - from) / 1000).toFixed(1)} s, Retry-After ${reporter.retryAfterMin}-${reporter.retryAfterMax} s; PolyV calls for B: ${perChannel.get(B) ?? 0} of ${BUDGET} ` +
          `(${caused({ consumer: 'reporter', reason: 'report' })} caused by its reports)`,
      );
      figures.add(
        `calls caused (all brokers): scheduled ${caused({ consumer: '-', reason: 'scheduled' })}, looper ${caused({ consumer: 'looper' })}, ` +
          `reporter ${caused({ consumer: 'reporter' })}, reader ${caused({ consumer: 'reader' })}; reader's token verdicts ${JSON.stringify(Object.fromEntries(verdicts))}`,
      );
      figures.add(describeAudit('A: reader of both channels', audit));

      // The reader: every read answered with a token that was valid, never an error.
      expect(audit.responses).toBeGreaterThan(1000);
      expect(audit.byStatus, 'the reader saw nothing but 200').toEqual({ 200: audit.responses });
      expect(invariants(audit)).toEqual(ZERO_VIOLATIONS);
      expect([...verdicts.keys()], 'every token the reader got was valid at PolyV').toEqual(['valid']);
      expect(caused({ consumer: 'reader' }), 'the reader was always served from the cache').toBe(0);

      // The looper: its quota of PolyV calls, then 429 with Retry-After; never a 503.
      expect([...looper.tally.keys()].sort()).toEqual(['200 ', '429 upstream_quota_exceeded']);
      expect(looper.count(200)).toBe(QUOTA);
      expect(disposableCalls).toHaveLength(QUOTA);
      expect(caused({ consumer: 'looper', reason: 'disposable' })).toBe(QUOTA);
      expect(looper.tooManyWithoutRetryAfter, '429 without Retry-After').toBe(0);
      // Until the oldest of its calls leaves the rolling hour.
      expect(looper.retryAfterMax).toBeLessThanOrEqual(3600);
      expect(requests({ consumer: 'looper', outcome: 'upstream_quota_exceeded' }), 'counted by consumer and outcome').toBe(looper.count(429));
      expect(disposableVerdicts.filter((c) => !c.valid), 'the disposable tokens it got, as they arrived').toEqual([]);

      // The reporter: too-soon reports cost nothing, then its quota, then 429; never a 503.
      expect([...reporter.tally.keys()].sort()).toEqual(['200 ', '429 upstream_quota_exceeded']);
      expect(reporter.count(429)).toBeGreaterThan(0);
      expect(reporter.tooManyWithoutRetryAfter, '429 without Retry-After').toBe(0);
      expect(reporter.retryAfterMax).toBeLessThanOrEqual(3600);
      expect(caused({ consumer: 'reporter', reason: 'report' })).toBe(QUOTA);
      expect(requests({ consumer: 'reporter', outcome: 'report_too_soon' })).toBeGreaterThan(0);
      expect(requests({ consumer: 'reporter', outcome: 'upstream_quota_exceeded' })).toBe(reporter.count(429));

      // The channels: within the budget, and the proactive refresh was never refused.
      for (const channel of [A, B]) expect(perChannel.get(channel) ?? 0, channel).toBeLessThanOrEqual(BUDGET);
      expect(total(metrics, 'polyv_broker_refreshes_total', { trigger: 'scheduled', outcome: 'budget_exhausted' })).toBe(0);
      expect(total(metrics, 'polyv_broker_budget_refusals_total'), 'no budget refusal at all').toBe(0);

      expect(fleet.describeProblems()).toBe('');
      expect(fleet.leakedTokens([...reader.tokens, ...[...looper.tokens, ...reporter.tokens].map((token) => ({ token }))]), 'tokens in the logs').toEqual([]);
      for (const p of fleet.brokers) await p.stop();
      for (const p of fleet.brokers) expect(p.stopExitCodes.at(-1), `${p.name} exit code`).toBe(0);
    } finally {
      await reader.close();
      await looper.close();
      await reporter.close();
    }
  });
});

// ------------------------------------------------------------------------------------------ B

const WARM = Array.from({ length: 20 }, (_, i) => String(2000001 + i));
const PAUSE_S = 6;
/** Tokens of 60 s refreshed 50 s before expiry: due 5-10 s after each fetch, servable for 58 s. */
const EXPIRE_S = 60;
const REFRESH_BEFORE_S = 50;
/** The simulator holds back its answer to the probe this long: no other call may reach it meanwhile. */
const PROBE_LATENCY_MS = 400;
const QPS_EXCEEDS = { kind: 'error-code', code: 400, message: 'qps exceeds number of calls, limit: 500', endpoints: ['get-channel-token'] } as const;

/** The fleet's pause record in Redis (at, until), read every 50 ms: when it appeared, its last `at`, when it went. */
class PauseWatch {
  firstSeenAt = 0;
  lastSeenAt = 0;
  goneAt = 0;
  lastAt = 0;
  private readonly redis: Redis;
  private timer: NodeJS.Timeout | undefined;

  constructor(redisUrl: string) {
    this.redis = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 1 });
  }

  start(key: string): void {
    let busy = false;
    this.timer = setInterval(() => {
      if (busy) return;
      busy = true;
      const asked = Date.now();
      this.redis
        .hgetall(key)
        .then((h) => {
          const answered = Date.now();
          if (h['until'] !== undefined) {
            if (this.firstSeenAt === 0) this.firstSeenAt = answered;
            this.lastSeenAt = asked;
            this.lastAt = Number(h['at']);
          } else if (this.firstSeenAt !== 0 && this.goneAt === 0) {
            this.goneAt = answered;
          }
        })
        .catch(() => undefined)
        .finally(() => {
          busy = false;
        });
    }, 50);
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.redis.quit();
  }
}

/** polyv_broker_upstream_paused of one replica, scraped every 250 ms: the scrape's start and end, and the value. */
class GaugeWatch {
  readonly samples: Array<{ start: number; end: number; value: number }> = [];
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly read: () => Promise<number>) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        const start = Date.now();
        try {
          const value = await this.read();
          this.samples.push({ start, end: Date.now(), value });
        } catch {
          // a slow scrape is not what this measures
        }
        await sleep(250);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

describe('B: PolyV says `qps exceeds`: the fleet pauses, readers are served, one probe, then refreshes resume', () => {
  let fleet: Fleet;

  beforeAll(async () => {
    fleet = new Fleet({
      warmChannels: WARM,
      simChannels: WARM,
      apiReplicas: 3,
      workers: 1,
      env: {
        POLYV_TIMEOUT_MS: '2000',
        BROKER_TOKEN_EXPIRE_SECONDS: String(EXPIRE_S),
        BROKER_REFRESH_BEFORE_SECONDS: String(REFRESH_BEFORE_S),
        BROKER_UPSTREAM_PAUSE_SECONDS: String(PAUSE_S),
        BROKER_REFRESH_RESERVE_PER_HOUR: '30',
        BROKER_CONSUMER_UPSTREAM_PER_HOUR: '60',
        BROKER_REPORT_MIN_AGE_SECONDS: '10',
      },
    });
    await fleet.start();
  });

  afterAll(async () => {
    await fleet?.stop();
    figures.print();
  });

  it(`when PolyV says qps exceeds, then no call goes out for ${PAUSE_S} s but those in flight, every read is served a valid token, polyv_broker_upstream_paused is 1, and after the pause one probe goes out alone before refreshes resume`, async () => {
    // Every channel's first token: the refreshes then come due together, 5-10 s after them.
    const warmedAt = await timeUntil('20 channels warm', async () => new Set(issues(await fleet.channelTokenCalls()).map((c) => c.channelId)).size === WARM.length, 15_000);
    const firstIssueAt = Math.min(...issues(await fleet.channelTokenCalls()).map((c) => c.at));
    figures.add(`B: 20 channels warm ${(warmedAt / 1000).toFixed(1)} s after the fleet was ready`);

    const reader = new LoadDriver({
      targets: fleet.apis.map((p) => p.url),
      channels: WARM,
      ratePerSec: 150,
      concurrency: 6,
      mix: TOKENS_ONLY,
      checkToken: (c, t) => fleet.checkToken(c, t),
    });
    const pause = new PauseWatch(fleet.redisUrl);
    const gauge = new GaugeWatch(async () => metricSum(await fleet.metrics(fleet.apis[0]!, 2000), 'polyv_broker_upstream_paused'));
    try {
      const readFrom = Date.now();
      reader.start();
      pause.start(new RedisKeys('ptb').upstreamPause());
      gauge.start();
      // Before the first scheduled refresh (5 s after its fetch at the earliest).
      const faultAt = firstIssueAt + 4000;
      await sleep(Math.max(0, faultAt - Date.now()));
      const before = await fleet.channelTokenCalls();
      const faultSetAt = Date.now();
      await fleet.setFault(QPS_EXCEEDS);
      const firstFaulted = async (): Promise<SimCall | undefined> => (await fleet.channelTokenCalls()).find((c) => c.faulted && c.code === 400 && c.at >= faultSetAt);
      await timeUntil('a refresh meets `qps exceeds`', async () => (await firstFaulted()) !== undefined, 15_000, 50);
      const first = (await firstFaulted())!;
      // Calls in flight when the pause began meet the fault too; then the probe gets an answer held back a moment.
      await sleep(Math.max(0, first.at + 1500 - Date.now()));
      await fleet.setFault({ kind: 'latency', ms: PROBE_LATENCY_MS, times: 1, endpoints: ['get-channel-token'] });
      const pausedGauge = async () => Promise.all(fleet.brokers.map(async (p) => metricSum(await fleet.metrics(p), 'polyv_broker_upstream_paused')));
      const midPause = await pausedGauge();
      const midPauseEnded = Date.now();
      await timeUntil('the pause is cleared by its probe', () => pause.goneAt !== 0, (PAUSE_S + 10) * 1000, 50);
      await sleep(2500);
      const afterPause = await pausedGauge();
      await gauge.stop();
      await reader.stop();
      await reader.checksDone();
      await fleet.clearFault();

      const all = await fleet.channelTokenCalls();
      const pauseEnd = pause.lastAt + PAUSE_S * 1000;
      const duringPause = all.filter((c) => c.at > first.at && c.at < pauseEnd);
      const probe = all.find((c) => c.at >= pauseEnd);
      const afterProbe = all.filter((c) => probe !== undefined && c.at > probe.at);
      const nextAfterProbe = afterProbe[0];
      const probeAnsweredBy = (probe?.at ?? 0) + PROBE_LATENCY_MS;
      const resumed = issues(afterProbe.filter((c) => c.at <= probeAnsweredBy + 2500));
      const refreshedSinceFault = new Set(issues(all.filter((c) => c.at >= faultSetAt)).map((c) => c.channelId));
      const pausedSamples = gauge.samples.filter((s) => s.start - 1000 >= pause.firstSeenAt && s.end <= pause.lastSeenAt);
      const calmSamples = gauge.samples.filter((s) => s.end < first.at || s.start - 1000 >= pause.goneAt);
      const audit = auditWindow(reader, all, { from: readFrom, to: Date.now(), minTtlMs: fleet.minTtlMs, supersededGraceMs: PROBE_LATENCY_MS + 1000 });
      const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

      figures.add(
        `B: first \`qps exceeds\` ${sec(first.at - faultSetAt)} after the fault was set; ${all.filter((c) => c.faulted && c.code === 400).length} call(s) answered qps exceeds; ` +
          `${duringPause.length} call(s) during the ${PAUSE_S} s pause (${duringPause.map((c) => `+${c.at - first.at} ms`).join(', ') || 'none'}), ` +
          `${before.length} calls before the fault, ${all.length} in all`,
      );
      figures.add(
        `B: probe ${probe === undefined ? 'none' : `${sec(probe.at - pauseEnd)} after the pause's end (code ${probe.code})`}; next call ` +
          `${nextAfterProbe === undefined || probe === undefined ? 'none' : `${sec(nextAfterProbe.at - probe.at)} after the probe`}; ` +
          `${new Set(resumed.map((c) => c.channelId)).size} channel(s) refreshed within 2.5 s of the probe's answer, ` +
          `${WARM.length - refreshedSinceFault.size} not refreshed since the fault by the end; pause record seen gone ${sec(pause.goneAt - pauseEnd)} after the pause's end`,
      );
      figures.add(
        `B: polyv_broker_upstream_paused on api-1: ${pausedSamples.length} scrapes inside the pause, values ${JSON.stringify([...new Set(pausedSamples.map((s) => s.value))])}; ` +
          `${calmSamples.length} outside, values ${JSON.stringify([...new Set(calmSamples.map((s) => s.value))])}; ` +
          `on every broker ${sec(midPauseEnded - first.at)} into the pause ${JSON.stringify(midPause)}, after it ${JSON.stringify(afterPause)}`,
      );
      figures.add(describeAudit('B: readers of 20 channels', audit));

      // At most the calls already in flight when PolyV first said so; none once the pause is recorded.
      expect(duringPause.length, 'calls during the pause').toBeLessThanOrEqual(5);
      expect(duringPause.filter((c) => c.at > first.at + 1000), 'calls during the pause, not in flight when it began').toEqual([]);
      // One probe at the pause's end, alone until PolyV answered it; then refreshes resume.
      expect(probe, 'a probe after the pause').toBeDefined();
      expect(probe!.code).toBe(200);
      expect(probe!.at - pauseEnd, 'the probe follows the pause closely').toBeLessThan(3000);
      expect(nextAfterProbe === undefined || nextAfterProbe.at >= probeAnsweredBy, 'no call while the probe was out').toBe(true);
      expect(resumed.length, 'refreshes resumed after the probe').toBeGreaterThan(0);
      // The gauge: 1 throughout the pause, 0 before and after.
      expect(pausedSamples.length).toBeGreaterThan(5);
      expect(pausedSamples.filter((s) => s.value !== 1)).toEqual([]);
      expect(calmSamples.length).toBeGreaterThan(3);
      expect(calmSamples.filter((s) => s.value !== 0)).toEqual([]);
      if (midPauseEnded < pause.lastSeenAt) expect(midPause, 'every broker reports the shared pause').toEqual(fleet.brokers.map(() => 1));
      expect(afterPause).toEqual(fleet.brokers.map(() => 0));
      // Readers: served throughout, every token valid.
      expect(audit.responses).toBeGreaterThan(1000);
      expect(audit.byStatus, 'readers saw nothing but 200').toEqual({ 200: audit.responses });
      expect(invariants(audit)).toEqual(ZERO_VIOLATIONS);

      expect(fleet.describeProblems()).toBe('');
      expect(fleet.leakedTokens(reader.tokens), 'tokens in the logs').toEqual([]);
      for (const p of fleet.brokers) await p.stop();
      for (const p of fleet.brokers) expect(p.stopExitCodes.at(-1), `${p.name} exit code`).toBe(0);
    } finally {
      await gauge.stop();
      await reader.close();
      await pause.close();
    }
  });
});
