import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditWindow, describe as describeAudit, invariants, ZERO_VIOLATIONS } from './support/audit.js';
import { LoadDriver, TOKENS_ONLY } from './support/consumers.js';
import { Fleet, callsPerChannel, issues, sleep } from './support/fleet.js';
import { Figures } from './support/figures.js';

/**
 * Storms across the three API replicas: many consumers reporting the same rejected token at once, many
 * cold requests for new channels at once, and a consumer loop that reports every token it gets (which only
 * the budget can stop). The channel budget is lowered to 40 calls an hour so that it is reached.
 */
const WARM = ['1000001', '1000002'];
const REPORTED = '1000001';
const COLD = ['3000001', '3000002', '3000003', '3000004', '3000005'];
const LOOPED = '4000001';
const BUDGET = 40;
const BURST = 600;

const figures = new Figures('storms');
let fleet: Fleet;
let driver: LoadDriver;
let startedAt = 0;

const callsFor = async (channelId: string, after: number) => (await fleet.channelTokenCalls(channelId)).filter((c) => c.at > after);

beforeAll(async () => {
  fleet = new Fleet({ warmChannels: WARM, simChannels: [...WARM, ...COLD, LOOPED], env: { BROKER_CHANNEL_BUDGET_PER_HOUR: String(BUDGET) } });
  await fleet.start();
  driver = new LoadDriver({
    targets: fleet.apis.map((a) => a.url),
    channels: WARM,
    ratePerSec: 300,
    concurrency: 300,
    mix: TOKENS_ONLY,
    checkToken: (c, t) => fleet.checkToken(c, t),
  });
  startedAt = Date.now();
  // Background readers of the warm channels, so that every storm also races ordinary reads.
  driver.start();
  await sleep(1000);
});

afterAll(async () => {
  await driver?.close();
  await fleet?.stop();
  figures.print();
});

describe('storms of compare-and-refresh reports and cold requests across replicas', () => {
  it(`when ${BURST} consumers on all replicas report the same rejected token at once, then PolyV is called once and they all get the same new token`, async () => {
    const before = await driver.once({ op: 'get', channel: REPORTED });
    const rejected = before.token!;
    const from = Date.now();
    const answers = await Promise.all(Array.from({ length: BURST }, (_, i) => driver.once({ op: 'report-stale', channel: REPORTED, replica: i % 3, body: { rejectedToken: rejected } })));
    const took = Date.now() - from;
    const calls = await callsFor(REPORTED, from);
    const tokens = new Set(answers.map((a) => a.token));
    figures.add(`${BURST} reports of one token: ${calls.length} PolyV call, ${tokens.size} distinct answer, all answered in ${took} ms`);
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(calls.length).toBe(1);
    expect(tokens.size).toBe(1);
    const fresh = [...tokens][0]!;
    expect(fresh).not.toBe(rejected);
    expect((await fleet.checkToken(REPORTED, fresh)).valid).toBe(true);

    // The same reports again, now about a replaced token: answered with the current one, at no cost.
    const again = Date.now();
    const late = await Promise.all(Array.from({ length: BURST }, (_, i) => driver.once({ op: 'report-stale', channel: REPORTED, replica: i % 3, body: { rejectedToken: rejected } })));
    expect(late.every((a) => a.status === 200 && a.token === fresh)).toBe(true);
    expect(await callsFor(REPORTED, again)).toEqual([]);
  });

  it(`when ${BURST} cold requests for ${COLD.length} new channels arrive on all replicas at once, then each channel costs exactly one PolyV call`, async () => {
    const from = Date.now();
    const answers = await Promise.all(
      Array.from({ length: BURST }, (_, i) => {
        const channel = COLD[i % COLD.length]!;
        return driver.once({ op: 'get', channel, replica: Math.floor(i / COLD.length) % 3 }).then((a) => ({ channel, ...a }));
      }),
    );
    const took = Date.now() - from;
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    const perChannel = callsPerChannel(await fleet.channelTokenCalls());
    figures.add(`${BURST} cold requests for ${COLD.length} channels: PolyV calls per channel ${JSON.stringify(COLD.map((c) => perChannel.get(c) ?? 0))}, all answered in ${took} ms`);
    for (const channel of COLD) {
      expect(perChannel.get(channel), channel).toBe(1);
      expect(new Set(answers.filter((a) => a.channel === channel).map((a) => a.token)).size, channel).toBe(1);
    }
  });

  it('when consumers report every token they get in a loop, then PolyV calls for that channel stop at its budget, reads keep getting its valid token, and other channels are not affected', async () => {
    const first = await driver.once({ op: 'get', channel: LOOPED });
    const from = Date.now();
    let refused = 0;
    let retryAfterSeen = false;
    await Promise.all(
      Array.from({ length: 12 }, async (_, loop) => {
        let token = first.token!;
        const until = Date.now() + 4000;
        while (Date.now() < until) {
          const a = await driver.once({ op: 'report-stale', channel: LOOPED, replica: loop % 3, body: { rejectedToken: token } });
          if (a.status === 200) token = a.token!;
          else if (a.code === 'budget_exhausted') {
            refused += 1;
            retryAfterSeen ||= a.retryAfter !== undefined && Number(a.retryAfter) > 0;
            await sleep(20);
          }
        }
      }),
    );
    const read = await driver.once({ op: 'get', channel: LOOPED });
    const calls = await fleet.channelTokenCalls(LOOPED);
    figures.add(`report loop: ${calls.length} PolyV calls for the channel (budget ${BUDGET}/h), ${refused} reports refused with 503 budget_exhausted`);
    expect(calls.length).toBe(BUDGET);
    expect(refused).toBeGreaterThan(0);
    expect(retryAfterSeen, 'Retry-After on budget_exhausted').toBe(true);
    expect(read.status).toBe(200);
    expect((await fleet.checkToken(LOOPED, read.token!)).valid, 'a spent budget does not stop a valid token being served').toBe(true);
    const others = issues(await fleet.channelTokenCalls()).filter((c) => c.at > from && WARM.includes(c.channelId ?? ''));
    expect(others.length, 'warm channels kept being refreshed').toBeGreaterThan(0);
  });

  it('throughout: no token served expired or replaced, no process crashed, no channel over its budget', async () => {
    await driver.stop();
    await driver.checksDone();
    const a = auditWindow(driver, await fleet.channelTokenCalls(), { from: startedAt, to: Date.now(), minTtlMs: fleet.minTtlMs, supersededGraceMs: 1000 });
    figures.add(describeAudit('storms (whole file)', a));
    expect(invariants(a)).toEqual(ZERO_VIOLATIONS);
    for (const n of callsPerChannel(await fleet.channelTokenCalls()).values()) expect(n).toBeLessThanOrEqual(BUDGET);
    expect(fleet.describeProblems()).toBe('');
    expect(fleet.leakedTokens(driver.tokens), 'tokens in the logs').toEqual([]);
    for (const p of fleet.brokers) await p.stop();
    for (const p of fleet.brokers) expect(p.stopExitCodes.at(-1), `${p.name} exit code`).toBe(0);
  });
});
