import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerClient, type ChannelToken } from '../src/client/broker-client.js';
import { RedisKeys } from '../src/store/redis-keys.js';
import { BIN, FAULT_ACCOUNT, FAULT_KEY, Fleet } from './faults/support/fleet.js';
import { SseStream, tokenOf, type SseEvent } from './support/sse.js';

/**
 * The token streams as real processes (the built CLI; run `npm run build` first): a redis-server, the
 * simulator, two API replicas and a worker. Tokens live 8 s and are refreshed 4 s before expiry, so each
 * of 30 warm channels gets a new token about every 4 s, written by the worker: a consumer streaming from one
 * API replica hears of each, resumes on the other with Last-Event-ID, 2000 streams share one replica, and
 * the Node client's subscription lives through a restart of its replica.
 *
 * Timing figures (latency, memory) are printed, not asserted tightly: the machine is shared.
 */

const CHANNELS = Array.from({ length: 30 }, (_, i) => String(4_000_001 + i));
const MIN_TTL_MS = 2000;
const keys = new RedisKeys('ptb');
let fleet: Fleet;
let redis: Redis;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const quantile = (sorted: readonly number[], q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
const figure = (line: string) => process.stdout.write(`[token streams] ${line}\n`);

beforeAll(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run npm run build first`);
  fleet = new Fleet({
    warmChannels: CHANNELS,
    simChannels: CHANNELS,
    apiReplicas: 2,
    workers: 1,
    env: {
      BROKER_TOKEN_EXPIRE_SECONDS: '8',
      BROKER_REFRESH_BEFORE_SECONDS: '4',
      BROKER_MIN_TTL_SECONDS: String(MIN_TTL_MS / 1000),
      // No PolyV call times out on a busy machine: every budget slot (the version) is then a written token.
      POLYV_TIMEOUT_MS: '5000',
      // A stream outlives every request timeout: they bound receiving the request, not the answer.
      BROKER_HEADERS_TIMEOUT_MS: '1000',
      BROKER_REQUEST_TIMEOUT_MS: '1000',
    },
  });
  await fleet.start();
  redis = new Redis(fleet.redisUrl);
  // Every warm channel has its first token before the streams open.
  const deadline = Date.now() + 20_000;
  while ((await Promise.all(CHANNELS.map((ch) => redis.exists(keys.token(FAULT_ACCOUNT.appId, ch))))).some((n) => n === 0)) {
    if (Date.now() > deadline) throw new Error('warm channels got no token');
    await sleep(200);
  }
}, 60_000);

afterAll(async () => {
  await redis?.quit();
  await fleet?.stop();
}, 60_000);

/** When the broker received a token (fetchedAt) and its version, as the worker wrote them. */
async function written(channelId: string): Promise<{ version: number; fetchedAt: number }> {
  const [version, fetchedAt] = await redis.hmget(keys.token(FAULT_ACCOUNT.appId, channelId), 'version', 'fetchedAt');
  return { version: Number(version), fetchedAt: Number(fetchedAt) };
}

interface Received {
  readonly channelId: string;
  readonly version: number;
  readonly token: string;
  readonly expireTime: number;
  readonly at: number;
}

/** Every token event of a stream, with the version its ID gives for the channel. */
function received(events: readonly SseEvent[]): Received[] {
  return events
    .filter((e) => e.event === 'token')
    .map((e) => {
      const t = tokenOf(e);
      const id = e.id ?? '';
      const entry = id.split(',').find((p) => p.startsWith(`${t.channelId}:`));
      const version = Number(entry === undefined ? id : entry.slice(t.channelId.length + 1));
      return { channelId: t.channelId, version, token: t.channelToken, expireTime: t.expireTime, at: e.at };
    });
}

describe('token streams across real processes', () => {
  it('when the worker refreshes channels, then a consumer streaming from an API replica gets every new token at once, never an expired one, and resumes on another replica without a duplicate', async () => {
    const [api1, api2] = fleet.apis;
    const path = `/v1/token-stream?channels=${CHANNELS.join(',')}`;
    const latencies: number[] = [];
    const checks: Array<Promise<void>> = [];
    const problems: string[] = [];

    /** As each token arrives: its latency from the worker's write, its TTL, and whether PolyV (the simulator) takes it. */
    const watch = (stream: SseStream, initial: number) => {
      let seen = initial;
      const timer = setInterval(() => {
        const fresh = received(stream.events).slice(seen);
        seen += fresh.length;
        for (const r of fresh) {
          checks.push(
            (async () => {
              const w = await written(r.channelId);
              if (w.version === r.version) latencies.push(r.at - w.fetchedAt);
              const check = await fleet.checkToken(r.channelId, r.token);
              if (!check.valid) problems.push(`${r.channelId} v${r.version}: ${check.reason ?? 'invalid'}`);
            })(),
          );
        }
      }, 5);
      return () => clearInterval(timer);
    };

    const first = await SseStream.open(`${api1!.url}${path}`, { key: FAULT_KEY });
    expect(first.status).toBe(200);
    await first.waitForEvents(CHANNELS.length);
    const stopFirst = watch(first, CHANNELS.length);
    const single = await SseStream.open(`${api1!.url}/v1/channels/${CHANNELS[0]}/token/stream`, { key: FAULT_KEY });
    await sleep(17_000);
    stopFirst();
    first.close();
    const resumeFrom = first.events.at(-1)!.id!;
    await sleep(500);
    const second = await SseStream.open(`${api2!.url}${path}`, { key: FAULT_KEY, lastEventId: resumeFrom });
    expect(second.status).toBe(200);
    const stopSecond = watch(second, 0);
    await sleep(10_000);
    stopSecond();
    second.close();
    single.close();
    await Promise.all(checks);

    // Per channel, across both connections: each version once, in order, none skipped (a refresh takes the next slot).
    const all = [...received(first.events), ...received(second.events)];
    for (const ch of CHANNELS) {
      const versions = all.filter((r) => r.channelId === ch).map((r) => r.version);
      expect(versions.length, ch).toBeGreaterThanOrEqual(5);
      for (let i = 1; i < versions.length; i++) expect([ch, versions[i]! - versions[i - 1]!]).toEqual([ch, 1]);
    }
    const heldAtResume = new Map(resumeFrom.split(',').map((p) => p.split(':') as [string, string]));
    for (const r of received(second.events)) expect(r.version).toBeGreaterThan(Number(heldAtResume.get(r.channelId)));
    // Nothing expired or below the minimum TTL, and the simulator accepted every token when it arrived.
    for (const r of all) expect(r.expireTime - r.at).toBeGreaterThanOrEqual(MIN_TTL_MS);
    expect(problems).toEqual([]);
    // The channel's own stream heard each of its tokens too, and heartbeats kept the streams alive (every 15 s).
    const own = received(single.events).map((r) => r.version);
    expect(own.length).toBeGreaterThanOrEqual(5);
    for (let i = 1; i < own.length; i++) expect(own[i]! - own[i - 1]!).toBe(1);
    expect(first.comments).toBeGreaterThanOrEqual(1);
    expect(single.comments).toBeGreaterThanOrEqual(1);

    const sorted = [...latencies].sort((x, y) => x - y);
    figure(`event latency from the worker's write (fetchedAt) to the consumer on another replica: ${sorted.length} events, p50 ${quantile(sorted, 0.5)} ms, p99 ${quantile(sorted, 0.99)} ms, max ${sorted.at(-1)} ms`);
    expect(sorted.length).toBeGreaterThanOrEqual(100);
    expect(quantile(sorted, 0.99)).toBeLessThan(1000);
    expect(fleet.leakedTokens(all)).toEqual([]);
  }, 120_000);

  it('when 2000 streams are open on one replica, then each gets its first token and the next refresh, within bounded memory per stream', async () => {
    const api2 = fleet.apis[1]!;
    const memory = async () => {
      const m = await fleet.metrics(api2);
      return { rss: m.get('polyv_broker_process_resident_memory_bytes') ?? Number.NaN, heap: m.get('polyv_broker_nodejs_heap_size_used_bytes') ?? Number.NaN };
    };
    // Warm the code paths first, so that the baseline is not taken before the JIT's own allocations.
    const warmup = await openRaw(api2.port, 50);
    await waitAll(warmup, 1, 20_000);
    closeRaw(warmup);
    await sleep(1000);
    const before = await memory();
    const started = Date.now();
    const streams = await openRaw(api2.port, 2000);
    await waitAll(streams, 1, 60_000);
    const openMs = Date.now() - started;
    await sleep(2000);
    const after = await memory();
    const open = (await fleet.metrics(api2)).get('polyv_broker_streams_open');
    expect(open).toBe(2000);
    // Each stream hears the next refresh of its channel (every channel is refreshed about every 4 s).
    await waitAll(streams, 2, 20_000);
    expect(streams.every((s) => s.status === 200 && !s.closed)).toBe(true);
    const rssPer = (after.rss - before.rss) / 2000;
    const heapPer = (after.heap - before.heap) / 2000;
    figure(`2000 streams on one replica: opened (first token each) in ${openMs} ms; RSS +${((after.rss - before.rss) / 1048576).toFixed(1)} MiB = ${(rssPer / 1024).toFixed(1)} KiB per stream; JS heap +${((after.heap - before.heap) / 1048576).toFixed(1)} MiB = ${(heapPer / 1024).toFixed(1)} KiB per stream`);
    expect(rssPer).toBeLessThan(64 * 1024);
    closeRaw(streams);
    const deadline = Date.now() + 10_000;
    while ((await fleet.metrics(api2)).get('polyv_broker_streams_open') !== 0 && Date.now() < deadline) await sleep(100);
    expect((await fleet.metrics(api2)).get('polyv_broker_streams_open')).toBe(0);
  }, 120_000);

  it("when the client's replica restarts, then its subscription ends cleanly, reconnects by itself and hears the token written meanwhile, with no token twice", async () => {
    const api2 = fleet.apis[1]!;
    const watched = CHANNELS.slice(0, 3);
    const client = new BrokerClient({ baseUrl: api2.url, apiKey: FAULT_KEY, stream: true, pollIntervalMs: 1000 });
    const seen = new Map<string, Array<ChannelToken & { at: number }>>(watched.map((ch) => [ch, []]));
    const invalid: string[] = [];
    const subs = watched.map((ch) =>
      client.subscribe(ch, (t) => {
        seen.get(ch)!.push({ ...t, at: Date.now() });
        void fleet.checkToken(ch, t.channelToken).then((c) => {
          if (!c.valid) invalid.push(`${ch}: ${c.reason ?? 'invalid'}`);
        });
      }),
    );
    await sleep(5000);
    const beforeStop = watched.map((ch) => seen.get(ch)!.length);
    expect(beforeStop.every((n) => n >= 1)).toBe(true);
    await api2.stop();
    expect(api2.stopExitCodes.at(-1)).toBe(0);
    const stoppedAt = Date.now();
    // Down for a whole refresh cycle: the worker replaces every token meanwhile.
    await sleep(5000);
    await api2.start('/readyz');
    const restartedAt = Date.now();
    // Each subscription hears the channel's current token (written while its replica was down) by itself.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const current = await Promise.all(watched.map((ch) => redis.hget(keys.token(FAULT_ACCOUNT.appId, ch), 'token')));
      const caughtUp = watched.every((ch, i) => seen.get(ch)!.some((t) => t.at > restartedAt && t.channelToken === current[i]));
      if (caughtUp) break;
      if (Date.now() > deadline) throw new Error('the subscriptions did not catch up after the restart');
      await sleep(100);
    }
    const firstAfter = Math.min(...watched.map((ch) => seen.get(ch)!.find((t) => t.at > restartedAt)!.at));
    figure(`client subscription across a replica restart: down ${restartedAt - stoppedAt} ms; first token ${firstAfter - restartedAt} ms after the replica was ready again`);
    for (const ch of watched) {
      const tokens = seen.get(ch)!.map((t) => t.channelToken);
      expect(new Set(tokens).size, `${ch}: no token twice`).toBe(tokens.length);
      const expireTimes = seen.get(ch)!.map((t) => t.expireTime);
      expect(expireTimes).toEqual([...expireTimes].sort((x, y) => x - y));
    }
    // With stream: true, reads are served from the cache the stream keeps current.
    const current = await redis.hget(keys.token(FAULT_ACCOUNT.appId, watched[0]!), 'token');
    expect((await client.getChannelToken(watched[0]!)).channelToken).toBe(current);
    for (const s of subs) s.close();
    await client.close();
    await sleep(200);
    expect(invalid).toEqual([]);
    expect(fleet.describeProblems()).toBe('');
  }, 120_000);
});

/** A stream on a raw socket, as cheap as a client can be: its status, and how many token events it got. */
interface RawStream {
  socket: Socket;
  status: number;
  tokens: number;
  closed: boolean;
  buffer: string;
}

function openRaw(port: number, count: number): Promise<RawStream[]> {
  return Promise.all(
    Array.from({ length: count }, (_, i) => {
      const channelId = CHANNELS[i % CHANNELS.length]!;
      return new Promise<RawStream>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        const s: RawStream = { socket, status: 0, tokens: 0, closed: false, buffer: '' };
        socket.setEncoding('utf8');
        socket.once('connect', () => {
          socket.write(`GET /v1/channels/${channelId}/token/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${FAULT_KEY}\r\nAccept: text/event-stream\r\n\r\n`);
          resolve(s);
        });
        socket.once('error', reject);
        socket.on('data', (chunk: string) => {
          s.buffer += chunk;
          if (s.status === 0) s.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(s.buffer)?.[1] ?? 0);
          let end: number;
          while ((end = s.buffer.indexOf('\n\n')) >= 0) {
            if (s.buffer.slice(0, end).includes('event: token')) s.tokens += 1;
            s.buffer = s.buffer.slice(end + 2);
          }
        });
        socket.on('close', () => {
          s.closed = true;
        });
      });
    }),
  );
}

async function waitAll(streams: readonly RawStream[], tokens: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!streams.every((s) => s.tokens >= tokens)) {
    if (Date.now() > deadline) {
      const behind = streams.filter((s) => s.tokens < tokens);
      throw new Error(`${behind.length} of ${streams.length} streams have fewer than ${tokens} tokens (statuses ${[...new Set(behind.map((s) => s.status))].join(',')})`);
    }
    await sleep(50);
  }
}

function closeRaw(streams: readonly RawStream[]): void {
  for (const s of streams) s.socket.destroy();
}
