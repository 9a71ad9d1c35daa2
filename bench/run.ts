/**
 * `npm run bench`: every figure of BENCHMARKS.md next to a baseline measured in the same run.
 *
 *   npm run bench                                   # everything (about 9 minutes on 2 cores)
 *   npm run bench -- --only=serve,latency           # some sections: serve, latency, cold, scale, cluster, stream, idle
 *   npm run bench -- --only=stream --subscribers=2000   # the token stream's fan-out (a few seconds)
 *   npm run bench -- --channels=20000 --seconds=5   # a smaller scheduler run, shorter load runs
 *   npm run bench -- --only=idle --idle-channels=500    # on-demand channels idling out, and the capacity (about 2.5 minutes)
 *
 * It starts its own redis-server (startRedisServer, loopback, no persistence), the PolyV simulator and every
 * server under test as child processes on 127.0.0.1, and stops them all when it ends, whatever happens
 * (a hard limit of 11 minutes included).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { request, Agent } from 'undici';
import { loadConfig } from '../src/config/config.js';
import { freePort, startRedisServer, type RedisServerHandle } from '../src/infra/redis-server.js';
import { systemClock } from '../src/lib/clock.js';
import { createLogger } from '../src/lib/logger.js';
import { BrokerMetrics } from '../src/metrics/broker-metrics.js';
import { PolyvClient } from '../src/polyv/polyv-client.js';
import { REFRESH_QUEUE } from '../src/scheduler/refresh-queue.js';
import { SWEEP_INTERVAL_MS } from '../src/scheduler/refresh-worker.js';
import { readTrackingPolicy } from '../src/service/read-tracker.js';
import { capacityFigures } from '../src/service/warm-capacity.js';
import { RedisKeys } from '../src/store/redis-keys.js';
import { startDelayProxy } from './delay-proxy.js';
import { TokenStore } from '../src/store/token-store.js';
import type { OpenLoopResult } from './open-loop.js';
import { BENCH_API_KEY, BENCH_APP_ID, BENCH_APP_SECRET, Child, autocannon, brokerEnv, quantile, sleep, sortNumbers, waitForHttp, wrk, wrkInstalled } from './support.js';

const { values: argv } = parseArgs({
  options: {
    only: { type: 'string', default: 'serve,latency,cold,scale,cluster,stream,idle' },
    /** Token-stream subscribers of the fan-out section. */
    subscribers: { type: 'string', default: '1000' },
    /** Channels in each group of the idle-out section (read once, read often, pinned). */
    'idle-channels': { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '8' },
    channels: { type: 'string', default: '100000' },
    rate: { type: 'string', default: '5000' },
    /** Writes a V8 CPU profile of every broker process under load into this directory (node --cpu-prof). */
    profile: { type: 'string' },
  },
});
const SECTIONS = new Set((argv.only ?? '').split(','));
const SECONDS = Number(argv.seconds);
const CHANNELS = Number(argv.channels);
const RATE = Number(argv.rate);
const SUBSCRIBERS = Number(argv.subscribers);
const IDLE_GROUP = Number(argv['idle-channels']);
const CONNECTIONS = 50;
const AUTH = { authorization: `Bearer ${BENCH_API_KEY}` };
const HARD_LIMIT_MS = 660_000;

const dist = (file: string) => new URL(`./${file}`, import.meta.url);
const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const log = (line: string) => process.stdout.write(`${line}\n`);

interface Row {
  figure: string;
  value: string;
  baseline: string;
  ratio: string;
  goal: string;
  met: string;
}
const rows: Row[] = [];
function row(figure: string, value: string, baseline: string, ratio: string, goal = '', met: boolean | undefined = undefined): void {
  rows.push({ figure, value, baseline, ratio, goal, met: met === undefined ? '' : met ? 'yes' : 'NO' });
  log(`  ${figure}: ${value}   baseline ${baseline}   ratio ${ratio}${goal === '' ? '' : `   goal ${goal}: ${met === true ? 'met' : met === false ? 'NOT met' : ''}`}`);
}

interface Served {
  child: Child;
  url: string;
  /** The processes that answer requests (cluster workers, or the one process). */
  pids: number[];
}

async function startServe(kind: 'bare' | 'broker', workers: number, env: Record<string, string>): Promise<Served> {
  const execArgv = argv.profile !== undefined && kind === 'broker' ? ['--cpu-prof', `--cpu-prof-dir=${argv.profile}`] : [];
  const child = await Child.start(dist('serve.js'), [kind, String(workers)], env, execArgv);
  const { url, pids } = child.info as { url: string; pids: number[] };
  await waitForHttp(`${url}/healthz`);
  return { child, url, pids };
}

/** CPU time (user + system) the processes used so far, in µs, from /proc (Linux). */
function cpuMicros(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return (ticks * 1_000_000) / CLOCK_TICKS_PER_SECOND;
}
const CLOCK_TICKS_PER_SECOND = 100;

/** A short unmeasured run first (JIT, connection set-up), then the measured one; autocannon unless told. */
async function measureThroughput(server: Served, headers: Record<string, string>, generator: typeof autocannon = autocannon) {
  const url = `${server.url}/v1/channels/1000001/token`;
  await generator(url, { connections: CONNECTIONS, seconds: 2, headers });
  const cpu0 = cpuMicros(server.pids);
  const result = await generator(url, { connections: CONNECTIONS, seconds: SECONDS, headers });
  // Server CPU per answered request: unlike req/s, it does not depend on who else uses the cores.
  return { ...result, cpuMicrosPerRequest: (cpuMicros(server.pids) - cpu0) / result.total };
}

async function getJson(url: string): Promise<{ status: number; text: string }> {
  const res = await request(url, { headers: AUTH });
  return { status: res.statusCode, text: await res.body.text() };
}

async function main(): Promise<void> {
  const started = Date.now();
  log(`polyv-token-broker bench — ${new Date().toISOString()}`);
  log(`machine: ${availableParallelism()} CPUs (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  log(`settings: ${CONNECTIONS} connections, ${SECONDS} s per load run, open-loop ${RATE} req/s, ${CHANNELS} channels for the scheduler\n`);

  const dir = mkdtempSync(join(tmpdir(), 'ptb-bench-'));
  let redisServer: RedisServerHandle | undefined;
  let redis: Redis | undefined;
  try {
    redisServer = await startRedisServer({ dir, appendOnly: false });
    redisPid = redisServer.pid;
    redis = new Redis(redisServer.url);
    const sim = await Child.start(dist('sim-server.js'), [], {});
    const simUrl = (sim.info as { url: string }).url;
    const serveEnv = brokerEnv(redisServer.url, simUrl, { BROKER_ROLE: 'api', BROKER_REDIS_PREFIX: 'bench-serve' });
    const tokenPath = '/v1/channels/1000001/token';

    let body = '';
    if (SECTIONS.has('serve') || SECTIONS.has('latency') || SECTIONS.has('cold') || SECTIONS.has('cluster')) {
      const broker = await startServe('broker', 1, serveEnv);
      const first = await getJson(`${broker.url}${tokenPath}`);
      if (first.status !== 200) throw new Error(`the broker answered ${first.status}: ${first.text}`);
      body = first.text;
      const bare = await startServe('bare', 1, { PORT: '0', BENCH_BODY: body });
      const check = await getJson(`${bare.url}${tokenPath}`);
      if (check.text !== body) throw new Error('the bare server does not answer the same bytes');

      if (SECTIONS.has('serve')) {
        log('1. serve throughput: cached GET with auth, keep-alive, autocannon');
        const b1 = await measureThroughput(bare, AUTH);
        const k1 = await measureThroughput(broker, AUTH);
        const b2 = await measureThroughput(bare, AUTH);
        const k2 = await measureThroughput(broker, AUTH);
        for (const r of [k1, k2]) if (r.non2xx > 0 || r.errors > 0) throw new Error(`broker answered ${r.non2xx} non-2xx, ${r.errors} errors`);
        const bareRps = (b1.requestsPerSec + b2.requestsPerSec) / 2;
        const brokerRps = (k1.requestsPerSec + k2.requestsPerSec) / 2;
        log(`   runs: bare ${fmt(b1.requestsPerSec, 0)} / ${fmt(b2.requestsPerSec, 0)}, broker ${fmt(k1.requestsPerSec, 0)} / ${fmt(k2.requestsPerSec, 0)} req/s`);
        row('serve throughput, autocannon (req/s)', fmt(brokerRps, 0), `bare node:http ${fmt(bareRps, 0)}`, fmt(brokerRps / bareRps), '>= 0.7', brokerRps / bareRps >= 0.7);
        const bareCpu = (b1.cpuMicrosPerRequest + b2.cpuMicrosPerRequest) / 2;
        const brokerCpu = (k1.cpuMicrosPerRequest + k2.cpuMicrosPerRequest) / 2;
        row('  server CPU per request (µs)', fmt(brokerCpu, 1), `bare node:http ${fmt(bareCpu, 1)}`, `bare/broker ${fmt(bareCpu / brokerCpu)}`);

        if (wrkInstalled()) {
          const wb1 = await measureThroughput(bare, AUTH, wrk);
          const wk1 = await measureThroughput(broker, AUTH, wrk);
          const wb2 = await measureThroughput(bare, AUTH, wrk);
          const wk2 = await measureThroughput(broker, AUTH, wrk);
          for (const r of [wk1, wk2]) if (r.non2xx > 0 || r.errors > 0) throw new Error(`broker answered ${r.non2xx} non-2xx, ${r.errors} errors (wrk)`);
          const wBare = (wb1.requestsPerSec + wb2.requestsPerSec) / 2;
          const wBroker = (wk1.requestsPerSec + wk2.requestsPerSec) / 2;
          log(`   wrk runs: bare ${fmt(wb1.requestsPerSec, 0)} / ${fmt(wb2.requestsPerSec, 0)}, broker ${fmt(wk1.requestsPerSec, 0)} / ${fmt(wk2.requestsPerSec, 0)} req/s`);
          row('serve throughput, wrk -t1 (req/s)', fmt(wBroker, 0), `bare node:http ${fmt(wBare, 0)}`, fmt(wBroker / wBare), '>= 0.7', wBroker / wBare >= 0.7);
          const wBareCpu = (wb1.cpuMicrosPerRequest + wb2.cpuMicrosPerRequest) / 2;
          const wBrokerCpu = (wk1.cpuMicrosPerRequest + wk2.cpuMicrosPerRequest) / 2;
          row('  server CPU per request, wrk (µs)', fmt(wBrokerCpu, 1), `bare node:http ${fmt(wBareCpu, 1)}`, `bare/broker ${fmt(wBareCpu / wBrokerCpu)}`);
          row('  latency p99, wrk (ms)', fmt((wk1.latencyP99Ms + wk2.latencyP99Ms) / 2, 2), `bare ${fmt((wb1.latencyP99Ms + wb2.latencyP99Ms) / 2, 2)}`, '');
        } else {
          log('   (wrk is not installed: `apt-get install wrk` adds the second generator)');
        }

        const noCache = await startServe('broker', 1, { ...serveEnv, BROKER_LOCAL_CACHE_MAX_ENTRIES: '0' });
        const n = await measureThroughput(noCache, AUTH);
        await noCache.child.stop();
        row('  for reference: cache off, express + one Redis read (req/s)', fmt(n.requestsPerSec, 0), `bare ${fmt(bareRps, 0)}`, fmt(n.requestsPerSec / bareRps));
        row('    its server CPU per request (µs)', fmt(n.cpuMicrosPerRequest, 1), `bare ${fmt(bareCpu, 1)}`, `bare/broker ${fmt(bareCpu / n.cpuMicrosPerRequest)}`);
      }

      if (SECTIONS.has('latency')) {
        log(`\n2. latency at a fixed ${RATE} req/s, open loop, ${CONNECTIONS} connections`);
        const gen = await Child.start(dist('open-loop.js'), [], {});
        const run = (url: string) =>
          gen.request<OpenLoopResult>('run', { url, rate: RATE, seconds: SECONDS, warmupSeconds: 2, connections: CONNECTIONS, headers: AUTH });
        const b = await run(`${bare.url}${tokenPath}`);
        const k = await run(`${broker.url}${tokenPath}`);
        await gen.stop();
        if (k.non2xx > 0 || k.errors > 0) throw new Error(`broker answered ${k.non2xx} non-2xx, ${k.errors} errors`);
        const d = (r: OpenLoopResult) => `p50 ${fmt(r.fromDueMs.p50, 3)} / p99 ${fmt(r.fromDueMs.p99, 3)} / p99.9 ${fmt(r.fromDueMs.p999, 3)} ms`;
        const w = (r: OpenLoopResult) => `p50 ${fmt(r.fromWriteMs.p50, 3)} / p99 ${fmt(r.fromWriteMs.p99, 3)} ms`;
        log(`   achieved ${fmt(k.achievedRate, 0)} req/s (broker), ${fmt(b.achievedRate, 0)} req/s (bare)`);
        row('latency from due time', d(k), `bare ${d(b)}`, `p99 ${fmt(k.fromDueMs.p99 / b.fromDueMs.p99)}`, 'p99 <= 1 ms', k.fromDueMs.p99 <= 1);
        row('  latency from socket write', w(k), `bare ${w(b)}`, `p99 ${fmt(k.fromWriteMs.p99 / b.fromWriteMs.p99)}`);
      }

      if (SECTIONS.has('cold')) {
        log('\n3. cold miss of each kind: first read (lock, budget, PolyV call, write; the channel token also schedules)');
        const polyv = new PolyvClient({
          baseUrl: simUrl,
          timeoutMs: 5000,
          connectTimeoutMs: 2000,
          clock: systemClock,
          logger: createLogger('silent'),
          metrics: new BrokerMetrics({ defaultMetrics: false }),
        });
        const account = { name: 'default', appId: BENCH_APP_ID, appSecret: BENCH_APP_SECRET, channels: [] };
        const agent = new Agent({ connections: 1 });
        // A second broker that reaches Redis through a proxy adding ROUND_TRIP_DELAY_MS to each round trip.
        const ROUND_TRIP_DELAY_MS = 4;
        const redisAddress = new URL(redisServer.url);
        const proxy = await startDelayProxy({ host: redisAddress.hostname, port: Number(redisAddress.port) }, ROUND_TRIP_DELAY_MS);
        const slowRedisBroker = await startServe('broker', 1, { ...serveEnv, REDIS_URL: proxy.url });
        let target = broker.url;
        const timeRead = async (path: string, body?: unknown) => {
          const t0 = performance.now();
          const res = await request(`${target}${path}`, {
            method: body === undefined ? 'GET' : 'POST',
            headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' },
            body: body === undefined ? undefined : JSON.stringify(body),
            dispatcher: agent,
          });
          await res.body.text();
          if (res.statusCode !== 200) throw new Error(`cold read ${path} answered ${res.statusCode}`);
          return performance.now() - t0;
        };
        const redisCommands = async () => Number(/total_commands_processed:(\d+)/.exec(await redis!.info('stats'))?.[1] ?? 0);
        // Each kind's cold read against the same PolyV call made directly (its round trip), on fresh channels.
        const kinds: Array<{ kind: string; polyvCall: (i: number) => Promise<unknown>; coldRead: (i: number) => Promise<number> }> = [
          {
            kind: 'channel',
            polyvCall: (i) => polyv.getChannelToken(account, { channelId: String(3_100_000 + i), expireSeconds: 3600 }),
            coldRead: (i) => timeRead(`/v1/channels/${3_000_000 + i}/token`),
          },
          {
            kind: 'watch_api',
            polyvCall: (i) => polyv.getWatchApiToken(account, { channelId: String(3_300_000 + i), viewerId: 'bench-viewer' }),
            coldRead: (i) => timeRead(`/v1/channels/${3_200_000 + i}/watch-tokens`, { viewerId: 'bench-viewer' }),
          },
          {
            kind: 'common',
            polyvCall: (i) => polyv.getCommonToken(account, String(3_500_000 + i)),
            coldRead: (i) => timeRead(`/v1/channels/${3_400_000 + i}/common-token`),
          },
          {
            kind: 'watch_url',
            polyvCall: (i) => polyv.getTokenWatchUrl(account, String(3_700_000 + i)),
            coldRead: (i) => timeRead(`/v1/channels/${3_600_000 + i}/watch-urls`, {}),
          },
        ];
        const N = 200;
        for (const { kind, polyvCall, coldRead } of kinds) {
          const cold: number[] = [];
          const rtt: number[] = [];
          const hit: number[] = [];
          let commands = 0;
          for (let i = 0; i < N + 20; i += 1) {
            const t0 = performance.now();
            await polyvCall(i);
            const r = performance.now() - t0;
            const before = await redisCommands();
            const c = await coldRead(i);
            // INFO itself counts one command.
            const used = (await redisCommands()) - before - 1;
            const h = await timeRead(tokenPath);
            if (i >= 20) {
              rtt.push(r);
              cold.push(c);
              hit.push(h);
              commands += used;
            }
          }
          // The same kind's cold reads through the delaying proxy: how many Redis round trips they wait for.
          target = slowRedisBroker.url;
          const slow: number[] = [];
          for (let i = N + 20; i < N + 80; i += 1) {
            await polyvCall(i);
            slow.push(await coldRead(i));
          }
          target = broker.url;
          const [sc, sr, sh] = [sortNumbers(cold), sortNumbers(rtt), sortNumbers(hit)];
          const extra = quantile(sc, 0.5) - quantile(sr, 0.5);
          const roundTrips = (quantile(sortNumbers(slow), 0.5) - quantile(sc, 0.5)) / ROUND_TRIP_DELAY_MS;
          log(`   ${kind}: ${N} cold reads p50 ${fmt(quantile(sc, 0.5), 3)} ms, p90 ${fmt(quantile(sc, 0.9), 3)} ms; PolyV round trip p50 ${fmt(quantile(sr, 0.5), 3)} ms; Redis commands per cold read ${fmt(commands / N, 1)}; cached channel read p50 ${fmt(quantile(sh, 0.5), 3)} ms`);
          row(`cold miss minus one PolyV round trip, ${kind} (p50, ms)`, fmt(extra, 3), `PolyV round trip ${fmt(quantile(sr, 0.5), 3)} ms`, fmt(quantile(sc, 0.5) / quantile(sr, 0.5)), '< 2 ms', extra < 2);
          row(`  p90 cold minus p90 round trip, ${kind} (ms)`, fmt(quantile(sc, 0.9) - quantile(sr, 0.9), 3), `Redis commands per cold read ${fmt(commands / N, 1)}`, '');
          row(`  Redis round trips on the answer path, ${kind}`, fmt(roundTrips, 1), `+${ROUND_TRIP_DELAY_MS} ms per round trip`, '');
        }
        await slowRedisBroker.child.stop();
        await proxy.close();
        await polyv.close();
        await agent.close();
      }

      if (SECTIONS.has('cluster')) {
        log('\n5. multi-core: the API in node:cluster, 2 processes vs 1');
        await broker.child.stop();
        const port = String(await freePort());
        const one = await startServe('broker', 1, { ...serveEnv, PORT: port });
        await getJson(`${one.url}${tokenPath}`);
        const r1 = await measureThroughput(one, AUTH);
        await one.child.stop();
        const two = await startServe('broker', 2, { ...serveEnv, PORT: port });
        const r2 = await measureThroughput(two, AUTH);
        await two.child.stop();
        const bareTwo = await startServe('bare', 2, { PORT: String(await freePort()), BENCH_BODY: body });
        const bOne = await measureThroughput(bare, AUTH);
        const bTwo = await measureThroughput(bareTwo, AUTH);
        await bareTwo.child.stop();
        row('API on 2 processes vs 1 (req/s)', `${fmt(r2.requestsPerSec, 0)} vs ${fmt(r1.requestsPerSec, 0)}`, `bare node:http 2 vs 1: ${fmt(bTwo.requestsPerSec, 0)} vs ${fmt(bOne.requestsPerSec, 0)} (x${fmt(bTwo.requestsPerSec / bOne.requestsPerSec)})`, fmt(r2.requestsPerSec / r1.requestsPerSec));
      } else {
        await broker.child.stop();
      }
      await bare.child.stop();
    }

    if (SECTIONS.has('scale')) await scale(redis, redisServer.url, simUrl, sim);
    if (SECTIONS.has('stream')) await streamFanOut(redisServer.url, simUrl);
    if (SECTIONS.has('idle')) await idleOut(redis, redisServer.url, simUrl, sim);
    await sim.stop();
  } finally {
    Child.killAll();
    await redis?.quit().catch(() => undefined);
    await redisServer?.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  log('\nsummary');
  log('| figure | measured | baseline | ratio | goal | met |');
  log('| --- | --- | --- | --- | --- | --- |');
  for (const r of rows) log(`| ${r.figure} | ${r.value} | ${r.baseline} | ${r.ratio} | ${r.goal} | ${r.met} |`);
  log(`\ndone in ${fmt((Date.now() - started) / 1000, 0)} s; load average now ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
}

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 'NaN');
}

/** Bytes of Redis' expiry dictionary (MEMORY STATS `overhead.hashtable.expires` of db 0), which MEMORY USAGE leaves out. */
async function expiresOverhead(redis: Redis): Promise<number> {
  const stats = (await redis.call('MEMORY', 'STATS')) as unknown[];
  const db = stats[stats.indexOf('db.0') + 1];
  if (!Array.isArray(db)) return 0;
  return Number(db[db.indexOf('overhead.hashtable.expires') + 1] ?? 0);
}

async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 'NaN') + Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 'NaN');
}

/**
 * 4. Scheduler scale. (a) CHANNELS channels made warm through the production path with a 3600 s lifetime and
 * Redis' default encoding limits, half of them on demand (a cold read each) and half pinned (PUT's path, the
 * first fetch by a worker): Redis memory per warm channel of each mode, and what each key of one channel
 * costs. (b) With those channels in the schedule, a time-compressed set — 36 s tokens refreshed 3 s before
 * expiry, the defaults 3600/300 divided by 100, jitter included — pinned and refreshed by a real worker under
 * the real fleet-wide PolyV limit: timing error, calls per channel-hour, worker CPU.
 */
async function scale(redis: Redis, redisUrl: string, simUrl: string, sim: Child): Promise<void> {
  log(`\n4. scheduler scale: ${CHANNELS} warm channels, half on demand, half pinned, Redis defaults`);
  const prefix = 'ptb'; // the default, so key names are as long as in production
  const env = brokerEnv(redisUrl, simUrl, { BROKER_ROLE: 'api', BROKER_REDIS_PREFIX: prefix, LOG_LEVEL: 'error' });
  const seeder = await Child.start(dist('scale-seed.js'), [], env);
  const k = new RedisKeys(prefix);
  const schedule = k.schedule(BENCH_APP_ID);
  const usage = async (key: string) => Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
  const encoding = async (key: string) => String(await redis.call('OBJECT', 'ENCODING', key));
  /** Every key of the refresh queue (BullMQ), and the bytes they take. */
  const bullKeys = async () => {
    let cursor = '0';
    const keys: string[] = [];
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${k.bullPrefix()}:${REFRESH_QUEUE}:*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    let bytes = 0;
    for (const key of keys) bytes += await usage(key);
    return { count: keys.length, bytes };
  };
  // The fleet-wide limiter's sorted set holds the seeding's calls for 10 s. It belongs to no channel, so it is
  // deleted before each measurement, as it would expire (the refresh run then starts with the whole limit).
  const settled = async () => {
    await sleep(2000);
    await redis.del(k.globalLimiter());
    return { mem: await usedMemory(redis), keys: await redis.dbsize(), expires: await expiresOverhead(redis) };
  };
  const listpackValue = (await redis.config('GET', 'hash-max-listpack-value'))[1] ?? '?';
  const onDemand = { from: 10_000_000, count: Math.floor(CHANNELS / 2) };
  const pinned = { from: onDemand.from + onDemand.count, count: CHANNELS - onDemand.count };

  const before = { mem: await usedMemory(redis), keys: await redis.dbsize(), expires: await expiresOverhead(redis) };
  const seeded = await seeder.request<{ ms: number; failures: number }>('seed', { ...onDemand, concurrency: 200 });
  const afterOnDemand = await settled();
  log(`   on demand: ${onDemand.count} channels read cold in ${fmt(seeded.ms / 1000, 1)} s (${fmt(onDemand.count / (seeded.ms / 1000), 0)}/s, ${seeded.failures} failures), ${afterOnDemand.keys - before.keys} keys`);

  // Pinned as PUT does it; the first fetch of each is a worker's (a replica with role worker, fleet limit lifted).
  const pinner = await Child.start(dist('scale-seed.js'), [], { ...env, BROKER_ROLE: 'worker', BROKER_WORKER_CONCURRENCY: '64' });
  const pinStarted = Date.now();
  const pinnedReply = await pinner.request<{ ms: number; failures: number }>('pin', { ...pinned, concurrency: 200 });
  // Each channel has its token once its next refresh is about 55 minutes away (a pinned channel without one is due now).
  const expected = onDemand.count - seeded.failures + pinned.count - pinnedReply.failures;
  for (;;) {
    const fetched = await redis.zcount(schedule, Date.now() + 600_000, '+inf');
    if (fetched >= expected) break;
    if (Date.now() - pinStarted > 300_000) throw new Error(`only ${fetched} of ${expected} warm channels have a token after 5 minutes`);
    await sleep(250);
  }
  const pinMs = Date.now() - pinStarted;
  await pinner.stop();
  const afterPinned = await settled();
  log(`   pinned: ${pinned.count} channels pinned in ${fmt(pinnedReply.ms / 1000, 1)} s (${pinnedReply.failures} failures), each with its token (fetched by the worker) after ${fmt(pinMs / 1000, 1)} s (${fmt(pinned.count / (pinMs / 1000), 0)}/s), ${afterPinned.keys - afterOnDemand.keys} keys`);

  // One channel of each mode, key by key (MEMORY USAGE), and the shared structures per channel.
  const parts = async (ch: string) => ({
    token: await usage(k.token(BENCH_APP_ID, ch)),
    status: await usage(k.status(BENCH_APP_ID, ch)),
    budget: await usage(k.budget(BENCH_APP_ID, ch)),
  });
  const enc = async (ch: string) =>
    `token ${await encoding(k.token(BENCH_APP_ID, ch))}, status ${await encoding(k.status(BENCH_APP_ID, ch))}, budget ${await encoding(k.budget(BENCH_APP_ID, ch))}`;
  const warmChannels = onDemand.count + pinned.count;
  const schedulePerChannel = (await usage(schedule)) / warmChannels;
  const pinnedPerChannel = (await usage(k.pinned(BENCH_APP_ID))) / pinned.count;
  const bull = await bullKeys();
  const modes = [
    {
      label: 'on-demand',
      perChannel: (afterOnDemand.mem - before.mem) / onDemand.count,
      keys: (afterOnDemand.keys - before.keys) / onDemand.count,
      expires: (afterOnDemand.expires - before.expires) / onDemand.count,
      parts: await parts(String(onDemand.from)),
      enc: await enc(String(onDemand.from)),
      shared: schedulePerChannel,
      bull: 0,
    },
    {
      label: 'pinned',
      perChannel: (afterPinned.mem - afterOnDemand.mem) / pinned.count,
      keys: (afterPinned.keys - afterOnDemand.keys) / pinned.count,
      expires: (afterPinned.expires - afterOnDemand.expires) / pinned.count,
      parts: await parts(String(pinned.from)),
      enc: await enc(String(pinned.from)),
      shared: schedulePerChannel + pinnedPerChannel,
      bull: bull.bytes / pinned.count,
    },
  ];
  log(`     shared, per channel: schedule sorted set ${fmt(schedulePerChannel, 0)} B (${warmChannels} members, ${await encoding(schedule)}), pinned hash ${fmt(pinnedPerChannel, 0)} B per pinned channel (${await encoding(k.pinned(BENCH_APP_ID))})`);
  log(`     BullMQ (queue ${REFRESH_QUEUE}) after seeding: ${bull.count} keys, ${bull.bytes} B in all = ${fmt(bull.bytes / pinned.count, 1)} B per pinned channel (jobs are removed when they end; what stays is the queue's own keys and its capped event stream)`);
  for (const m of modes) {
    const { token, status, budget } = m.parts;
    const rest = m.perChannel - token - status - budget - m.shared - m.bull - m.expires;
    log(
      `     ${m.label}: ${fmt(m.perChannel, 0)} B per channel, ${fmt(m.keys, 2)} keys per channel; MEMORY USAGE of one channel: token ${token} B, status ${status} B, budget ${budget} B (${m.enc}); ` +
        `shared ${fmt(m.shared, 0)} B${m.bull > 0 ? `, BullMQ ${fmt(m.bull, 0)} B` : ''}; expiry dictionary ${fmt(m.expires, 0)} B (token and budget expire); the rest ${fmt(rest, 0)} B (the key dictionary's buckets, allocator rounding, clients)`,
    );
    row(`Redis memory per warm channel, ${m.label}, Redis defaults (hash-max-listpack-value ${listpackValue}) (bytes)`, fmt(m.perChannel, 0), '1 KiB = 1024 (v1: 1 739, from BENCHMARKS.md)', fmt(m.perChannel / 1024), '<= 1024', m.perChannel <= 1024);
  }

  // Tokens encrypted at rest (BROKER_ENCRYPTION_KEY): the sealed token (about 100 bytes) is longer than the 64
  // bytes up to which Redis keeps a hash compact by default, so the token hash becomes a hashtable; with
  // hash-max-listpack-value 256 it stays a listpack. A smaller set of on-demand channels in each setting.
  const sealedSeeder = await Child.start(dist('scale-seed.js'), [], { ...env, BROKER_ENCRYPTION_KEY: randomBytes(32).toString('base64') });
  const sealedCount = Math.max(1000, Math.floor(CHANNELS / 10));
  for (const [setting, from, value] of [
    [`Redis defaults (hash-max-listpack-value ${listpackValue})`, 11_000_000, listpackValue],
    ['hash-max-listpack-value 256', 11_000_000 + sealedCount, '256'],
  ] as const) {
    await redis.config('SET', 'hash-max-listpack-value', value);
    const m0 = await settled();
    const r = await sealedSeeder.request<{ ms: number; failures: number }>('seed', { from, count: sealedCount, concurrency: 200 });
    const m1 = await settled();
    const perChannel = (m1.mem - m0.mem) / sealedCount;
    const token = k.token(BENCH_APP_ID, String(from));
    log(`   tokens encrypted, ${setting}: ${sealedCount} channels read cold (${r.failures} failures), ${fmt(perChannel, 0)} B per channel; token hash ${await usage(token)} B (${await encoding(token)})`);
    row(`  the same, on-demand, tokens encrypted (BROKER_ENCRYPTION_KEY), ${setting} (bytes)`, fmt(perChannel, 0), '1 KiB = 1024', fmt(perChannel / 1024), '<= 1024', perChannel <= 1024);
  }
  await redis.config('SET', 'hash-max-listpack-value', listpackValue);
  await sealedSeeder.stop();

  // (b) the time-compressed refresh run
  const N = 3000;
  const E = 36;
  const B = 3;
  const cycleMs = (E - B) * 1000;
  const workerStarted = Date.now();
  const worker = await Child.start(dist('scale-worker.js'), [], {
    ...env,
    BROKER_ROLE: 'worker',
    BROKER_TOKEN_EXPIRE_SECONDS: String(E),
    BROKER_REFRESH_BEFORE_SECONDS: String(B),
    BROKER_MIN_TTL_SECONDS: '1',
    BROKER_GLOBAL_LIMIT_PER_10S: '1500',
    BROKER_RECONCILE_INTERVAL_SECONDS: '3600',
  });
  // Its start-up reconcile checks that each pinned channel has its place in the schedule (one command each).
  log(`   refresh worker started in ${fmt((Date.now() - workerStarted) / 1000, 1)} s (its start-up reconcile checks each of the ${pinned.count} pinned channels)`);
  await sim.request('reset');
  const t0 = Date.now();
  log(`   refresh run: ${N} channels with ${E} s tokens refreshed ${B} s before expiry, pinned at ${fmt(N / (cycleMs / 1000), 0)}/s`);
  await seeder.request('warm', { from: 20_000_000, count: N, ratePerSec: N / (cycleMs / 1000) });
  // Steady state: from the first scheduled refresh on, two whole cycles.
  const windowFrom = t0 + cycleMs;
  const windowTo = windowFrom + 2 * cycleMs;
  await sleep(Math.max(0, windowFrom - Date.now()));
  const cpuA = await worker.request<NodeJS.CpuUsage>('cpu');
  const redisCpuA = await redisCpuSeconds(redis);
  await sleep(Math.max(0, windowFrom + cycleMs - Date.now()));
  const bullMid = await bullKeys();
  await sleep(Math.max(0, windowTo - Date.now()));
  const cpuB = await worker.request<NodeJS.CpuUsage>('cpu');
  const redisCpuB = await redisCpuSeconds(redis);
  await sleep(2000);
  const counted = await sim.request<{ calls: number; channels: number }>('count', { from: windowFrom, to: windowTo, prefix: '2' });
  const timing = await worker.request<{ count: number; p1: number; p50: number; p99: number; max: number; absP99: number }>('timing', { from: t0, to: windowTo });
  await worker.stop();
  await seeder.stop();
  log(`   BullMQ keys during the run: ${bullMid.count} keys, ${bullMid.bytes} B (waiting and running jobs only, for ${N + warmChannels} warm channels)`);

  const compressedHours = (windowTo - windowFrom) / (E * 1000);
  const perChannelHour = counted.calls / N / compressedHours;
  const policy = 3600 / (3600 - 300 - 15);
  const cpuMs = (cpuB.user - cpuA.user + cpuB.system - cpuA.system) / 1000;
  log(`   ${timing.count} refresh jobs timed: error p1 ${fmt(timing.p1, 0)} ms, p50 ${fmt(timing.p50, 0)} ms, p99 ${fmt(timing.p99, 0)} ms, max ${fmt(timing.max, 0)} ms (the sweep runs every ${SWEEP_INTERVAL_MS} ms)`);
  log(`   steady window: ${counted.calls} PolyV calls for ${counted.channels} channels in ${fmt((windowTo - windowFrom) / 1000, 0)} s = ${fmt(compressedHours, 2)} compressed hours`);
  row('refresh timing error |p99| (ms)', fmt(timing.absP99, 0), 'due time (the schedule score)', '', '< 1000', timing.absP99 < 1000);
  row('PolyV calls per channel-hour (3600/300, compressed x100)', fmt(perChannelHour, 3), `policy ${fmt(policy, 3)} = 3600 / (3600 - 300 - mean jitter 15)`, fmt(perChannelHour / policy), '<= 1.1', perChannelHour <= 1.1);
  row('worker CPU per 1000 refreshes (ms)', fmt(cpuMs / (counted.calls / 1000), 0), `redis-server ${fmt(((redisCpuB - redisCpuA) * 1000) / (counted.calls / 1000), 0)} ms`, '');
}

/**
 * 6. Token-stream fan-out: SUBSCRIBERS streams of one channel on one broker (a child process of raw sockets),
 * while a writer (this process, through the broker's own TokenStore) writes new tokens of that channel as
 * fast as it can, each announced on pub/sub like a refresh. Events delivered per second to all subscribers,
 * and the broker's CPU per delivered event, against the cached GET of the same broker in the same run.
 */
async function streamFanOut(redisUrl: string, simUrl: string): Promise<void> {
  const seconds = Math.min(SECONDS, 4);
  const channelId = '1000001';
  const tokenPath = `/v1/channels/${channelId}/token`;
  log(`\n6. token stream fan-out: ${SUBSCRIBERS} subscribers of one channel, new tokens written by one writer for ${seconds} s; baseline: the cached GET`);
  const prefix = 'bench-stream';
  const broker = await startServe('broker', 1, brokerEnv(redisUrl, simUrl, { BROKER_ROLE: 'api', BROKER_REDIS_PREFIX: prefix }));
  const first = await getJson(`${broker.url}${tokenPath}`);
  if (first.status !== 200) throw new Error(`the broker answered ${first.status}: ${first.text}`);

  await autocannon(`${broker.url}${tokenPath}`, { connections: CONNECTIONS, seconds: 1, headers: AUTH });
  const readCpu0 = cpuMicros(broker.pids);
  const read = await autocannon(`${broker.url}${tokenPath}`, { connections: CONNECTIONS, seconds, headers: AUTH });
  if (read.non2xx > 0 || read.errors > 0) throw new Error(`broker answered ${read.non2xx} non-2xx, ${read.errors} errors`);
  const readCpu = (cpuMicros(broker.pids) - readCpu0) / read.total;

  const subscribers = await Child.start(dist('stream-subscribers.js'), [], {});
  type Count = { events: number; closed: number; lastIds: string[] };
  const opened = performance.now();
  await subscribers.request('open', { port: Number(new URL(broker.url).port), path: `${tokenPath}/stream`, key: BENCH_API_KEY, count: SUBSCRIBERS });
  const openMs = performance.now() - opened;
  const writerRedis = new Redis(redisUrl);
  try {
    const store = new TokenStore({ redis: writerRedis, keys: new RedisKeys(prefix) });
    let version = ((await store.read(BENCH_APP_ID, channelId))?.version ?? 0) + 1000;
    const c0 = await subscribers.request<Count>('count');
    const cpu0 = cpuMicros(broker.pids);
    const t0 = performance.now();
    let writes = 0;
    while (performance.now() - t0 < seconds * 1000) {
      version += 1;
      writes += 1;
      const token = randomBytes(16).toString('hex');
      await store.write(BENCH_APP_ID, channelId, { token, expireTime: Date.now() + 3_600_000, version, fetchedAt: Date.now() });
    }
    const elapsed = (performance.now() - t0) / 1000;
    const c1 = await subscribers.request<Count>('count');
    await sleep(1000);
    const c2 = await subscribers.request<Count>('count');
    const cpuPerEvent = (cpuMicros(broker.pids) - cpu0) / (c2.events - c0.events);
    const perSecond = (c1.events - c0.events) / elapsed;
    const caughtUp = c2.closed === 0 && c2.lastIds.length === 1 && c2.lastIds[0] === String(version);
    log(`   ${SUBSCRIBERS} streams opened (first token each) in ${fmt(openMs, 0)} ms; ${writes} tokens written (${fmt(writes / elapsed, 0)}/s), ${fmt((c2.events - c0.events) / SUBSCRIBERS, 0)} delivered to each subscriber (a burst is coalesced: each gets the latest), every subscriber on the last token at the end: ${caughtUp ? 'yes' : `NO (${JSON.stringify(c2)})`}`);
    row(`stream fan-out to ${SUBSCRIBERS} subscribers (token events/s delivered)`, fmt(perSecond, 0), `cached GET ${fmt(read.requestsPerSec, 0)} req/s`, fmt(perSecond / read.requestsPerSec));
    row('  server CPU per delivered event (µs)', fmt(cpuPerEvent, 1), `per cached GET ${fmt(readCpu, 1)}`, `GET/event ${fmt(readCpu / cpuPerEvent)}`);
  } finally {
    await writerRedis.quit().catch(() => undefined);
    await subscribers.stop();
    await broker.child.stop();
  }
}

/**
 * 7. A warm set that follows demand, time-compressed x100 like 4b (36 s tokens refreshed 3 s before expiry)
 * with an idle time of IDLE_SECONDS: one broker (role all) and three groups of IDLE_GROUP channels each, made
 * warm over WARMUP_MS: `idle`, read once (a cold GET); `read`, read again every READ_EVERY_MS; `pinned`, by
 * PUT and never read. From the simulator's call log: PolyV calls per idle channel-hour once every idle
 * channel's idle time has passed, against the read and pinned groups in the same window; from the schedule
 * (ZMSCORE every 250 ms): how long after its last read each idle channel left. Then the capacity figure at
 * the defaults, checked against the gauge of a broker started with the default settings.
 */
async function idleOut(redis: Redis, redisUrl: string, simUrl: string, sim: Child): Promise<void> {
  const N = IDLE_GROUP;
  const E = 36;
  const B = 3;
  const IDLE_SECONDS = 40;
  const WARMUP_MS = 25_000;
  const READ_EVERY_MS = 4000;
  const cycleMs = (E - B) * 1000;
  const { flushMs, graceMs } = readTrackingPolicy(IDLE_SECONDS * 1000);
  log(`\n7. idle-out: ${N} channels read once, ${N} read every ${READ_EVERY_MS / 1000} s, ${N} pinned; ${E} s tokens refreshed ${B} s before expiry, idle time ${IDLE_SECONDS} s (reads written every ${flushMs / 1000} s, grace ${graceMs / 1000} s)`);
  const prefix = 'bench-idle';
  const env = brokerEnv(redisUrl, simUrl, {
    BROKER_ROLE: 'all',
    BROKER_REDIS_PREFIX: prefix,
    LOG_LEVEL: 'error',
    BROKER_TOKEN_EXPIRE_SECONDS: String(E),
    BROKER_REFRESH_BEFORE_SECONDS: String(B),
    BROKER_MIN_TTL_SECONDS: '1',
    BROKER_IDLE_CHANNEL_SECONDS: String(IDLE_SECONDS),
    BROKER_GLOBAL_LIMIT_PER_10S: '1500',
    BROKER_RECONCILE_INTERVAL_SECONDS: '3600',
  });
  const broker = await startServe('broker', 1, env);
  const schedule = new RedisKeys(prefix).schedule(BENCH_APP_ID);
  const group = (from: number) => Array.from({ length: N }, (_, i) => String(from + i));
  const [idleIds, readIds, pinnedIds] = [group(4_100_000), group(4_200_000), group(4_300_000)];
  const prefixOf = { idle: '41', read: '42', pinned: '43' };
  const agent = new Agent({ connections: 16 });
  const send = async (method: 'GET' | 'PUT', path: string) => {
    const res = await request(`${broker.url}${path}`, { method, headers: AUTH, dispatcher: agent });
    await res.body.text();
    if (res.statusCode !== 200) throw new Error(`${method} ${path} answered ${res.statusCode}`);
  };
  const at = (ids: string[], i: number) => ids[i % ids.length] ?? '';
  const inSchedule = async (ids: string[]) => (await redis.zmscore(schedule, ...ids)).map((score) => score !== null);

  await sim.request('reset');
  const t0 = Date.now();
  const lastRead = new Map<string, number>();
  const warmups: Array<Promise<void>> = [];
  for (let i = 0; i < N; i += 1) {
    const wait = t0 + (i * WARMUP_MS) / N - Date.now();
    if (wait > 0) await sleep(wait);
    const ch = at(idleIds, i);
    warmups.push(send('GET', `/v1/channels/${ch}/token`).then(() => void lastRead.set(ch, Date.now())));
    warmups.push(send('GET', `/v1/channels/${at(readIds, i)}/token`));
    warmups.push(send('PUT', `/v1/channels/${at(pinnedIds, i)}`));
  }
  await Promise.all(warmups);

  // The read group is read again and again; the idle group never again.
  let reading = true;
  let reads = 0;
  const readLoop = (async () => {
    const started = Date.now();
    for (let j = 0; reading; j += 1) {
      const wait = started + (j * READ_EVERY_MS) / N - Date.now();
      if (wait > 0) await sleep(wait);
      await send('GET', `/v1/channels/${at(readIds, j)}/token`);
      reads += 1;
    }
  })();
  // When each idle channel leaves the schedule.
  const leftAt = new Map<string, number>();
  let watching = true;
  const watchLoop = (async () => {
    while (watching) {
      const present = await inSchedule(idleIds);
      const now = Date.now();
      present.forEach((p, i) => {
        const ch = at(idleIds, i);
        if (!p && !leftAt.has(ch)) leftAt.set(ch, now);
      });
      await sleep(250);
    }
  })();

  // Every idle channel has idled out once its idle time, the grace and one flush interval (its read is
  // written at the next flush) have passed since its read: from then on, two refresh cycles.
  const lastIdleRead = Math.max(...lastRead.values());
  const windowFrom = lastIdleRead + IDLE_SECONDS * 1000 + graceMs + flushMs;
  const windowTo = windowFrom + 2 * cycleMs;
  await sleep(Math.max(0, windowFrom - Date.now()));
  const warmAtWindow = await redis.zcard(schedule);
  await sleep(Math.max(0, windowTo - Date.now()) + 1000);
  reading = false;
  watching = false;
  await Promise.all([readLoop, watchLoop]);
  await agent.close();

  const count = (group: keyof typeof prefixOf, from: number, to: number) =>
    sim.request<{ calls: number; channels: number }>('count', { from, to, prefix: prefixOf[group] });
  const compressedHours = (windowTo - windowFrom) / (E * 1000);
  const perChannelHour = async (g: keyof typeof prefixOf) => (await count(g, windowFrom, windowTo)).calls / N / compressedHours;
  const [idleRate, readRate, pinnedRate] = [await perChannelHour('idle'), await perChannelHour('read'), await perChannelHour('pinned')];
  const beforeWindow = await count('idle', t0, windowFrom);
  const delays = sortNumbers([...leftAt].map(([ch, t]) => (t - (lastRead.get(ch) ?? t)) / 1000));
  const stillWarm = async (ids: string[]) => (await inSchedule(ids)).filter(Boolean).length;
  const [idleWarm, readWarm, pinnedWarm] = [await stillWarm(idleIds), await stillWarm(readIds), await stillWarm(pinnedIds)];
  const metrics = await (await request(`${broker.url}/metrics`)).body.text();
  await broker.child.stop();

  const policy = 3600 / (3600 - 300 - 15);
  const bound = IDLE_SECONDS + (graceMs + flushMs + SWEEP_INTERVAL_MS + 1000) / 1000;
  log(`   ${reads} reads of the read group; ${warmAtWindow} channels warm when the window opened, ${N - idleWarm} of ${N} idle channels gone at the end (read group still warm: ${readWarm}, pinned: ${pinnedWarm}); polyv_broker_warm_left_total{reason="idle"} ${gaugeValue(metrics, 'polyv_broker_warm_left_total{reason="idle"}')}`);
  log(`   idle group before the window: ${beforeWindow.calls} PolyV calls = ${fmt(beforeWindow.calls / N, 2)} per channel (its cold read, and the refreshes while it was warm: ${IDLE_SECONDS} s idle + ${graceMs / 1000} s grace against a ${fmt(cycleMs / 1000, 0)} s cycle)`);
  log(`   window: ${fmt((windowTo - windowFrom) / 1000, 0)} s = ${fmt(compressedHours, 2)} compressed hours, from ${fmt((windowFrom - lastIdleRead) / 1000, 0)} s after the last idle channel's read`);
  log(`   an idle channel left the schedule after its last read: p50 ${fmt(quantile(delays, 0.5), 1)} s, p99 ${fmt(quantile(delays, 0.99), 1)} s, max ${fmt(quantile(delays, 1), 1)} s (${delays.length} seen leaving)`);
  row(`PolyV calls per idle channel-hour, after the idle time (${E} s tokens, idle ${IDLE_SECONDS} s, compressed x100)`, fmt(idleRate, 3), `read every ${READ_EVERY_MS / 1000} s ${fmt(readRate, 3)}, pinned ${fmt(pinnedRate, 3)} (policy ${fmt(policy, 3)})`, fmt(idleRate / readRate), '0', idleRate === 0);
  row('  read channels still warm / pinned channels still warm', `${readWarm} / ${pinnedWarm}`, `of ${N} / ${N}`, '', `${N} / ${N}`, readWarm === N && pinnedWarm === N);
  row(
    'idle channel left the warm set, after its last read: p50 / p99 (s)',
    `${fmt(quantile(delays, 0.5), 1)} / ${fmt(quantile(delays, 0.99), 1)}`,
    `idle ${IDLE_SECONDS} s + grace ${graceMs / 1000} s (+ up to one flush, ${flushMs / 1000} s)`,
    '',
    `all ${N}, p99 <= ${fmt(bound, 1)}`,
    delays.length === N && quantile(delays, 0.99) <= bound,
  );

  // The capacity: warm channels whose scheduled refreshes alone reach the fleet-wide PolyV limit.
  const defaults = loadConfig(brokerEnv(redisUrl, simUrl));
  const figures = (config: typeof defaults) =>
    capacityFigures({
      expireSeconds: config.tokens.expireSeconds,
      globalPer10s: config.budget.globalPer10s,
      timing: { refreshBeforeMs: config.tokens.refreshBeforeSeconds * 1000, minTtlMs: config.tokens.minTtlSeconds * 1000 },
    });
  const atDefaults = figures(defaults);
  const capacityBroker = await startServe('broker', 1, brokerEnv(redisUrl, simUrl, { BROKER_ROLE: 'api', BROKER_REDIS_PREFIX: 'bench-capacity', LOG_LEVEL: 'error' }));
  const gauge = gaugeValue(await (await request(`${capacityBroker.url}/metrics`)).body.text(), 'polyv_broker_warm_capacity_channels');
  await capacityBroker.child.stop();
  const compressed = figures(loadConfig(env));
  const compressedGauge = gaugeValue(metrics, 'polyv_broker_warm_capacity_channels');
  log(`   capacity at the defaults (${defaults.tokens.expireSeconds} s tokens refreshed ${defaults.tokens.refreshBeforeSeconds} s early, fleet limit ${defaults.budget.globalPer10s} per 10 s): ${atDefaults.capacityChannels} channels = ${atDefaults.limitPerHour} calls/h / ${fmt(atDefaults.callsPerChannelHour, 4)} calls per channel-hour; broker gauge ${gauge}`);
  log(`   the idle run's broker: ${compressed.capacityChannels} channels (${fmt(compressed.callsPerChannelHour, 1)} calls per channel-hour), gauge ${compressedGauge}`);
  row(
    'warm-set capacity at the defaults (channels)',
    String(atDefaults.capacityChannels),
    `${atDefaults.limitPerHour} calls/h / ${fmt(atDefaults.callsPerChannelHour, 4)} calls per channel-hour`,
    '',
    `= gauge polyv_broker_warm_capacity_channels (${gauge})`,
    gauge === atDefaults.capacityChannels && compressedGauge === compressed.capacityChannels,
  );
}

/** The value of one series in Prometheus text (`name` with its labels as printed), NaN when absent. */
function gaugeValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

let redisPid: number | undefined;
function killEverything(): void {
  Child.killAll();
  if (redisPid !== undefined) process.kill(redisPid, 'SIGKILL');
}
const guard = setTimeout(() => {
  process.stderr.write('bench: hard time limit reached, stopping everything\n');
  killEverything();
  process.exit(1);
}, HARD_LIMIT_MS);
guard.unref();
process.once('SIGINT', () => {
  killEverything();
  process.exit(130);
});

main().then(
  () => {
    clearTimeout(guard);
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    killEverything();
    process.exit(1);
  },
);
