/**
 * `npm run bench`: every figure of BENCHMARKS.md next to a baseline measured in the same run.
 *
 *   npm run bench                                   # everything (about 4.5 minutes on 2 cores)
 *   npm run bench -- --only=serve,latency           # some sections: serve, latency, cold, scale, cluster, stream
 *   npm run bench -- --only=stream --subscribers=2000   # the token stream's fan-out (a few seconds)
 *   npm run bench -- --channels=20000 --seconds=5   # a smaller scheduler run, shorter load runs
 *
 * It starts its own redis-server (startRedisServer, loopback, no persistence), the PolyV simulator and every
 * server under test as child processes on 127.0.0.1, and stops them all when it ends, whatever happens
 * (a hard limit of 9.5 minutes included).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { request, Agent } from 'undici';
import { freePort, startRedisServer, type RedisServerHandle } from '../src/infra/redis-server.js';
import { systemClock } from '../src/lib/clock.js';
import { createLogger } from '../src/lib/logger.js';
import { BrokerMetrics } from '../src/metrics/broker-metrics.js';
import { PolyvClient } from '../src/polyv/polyv-client.js';
import { refreshJobId } from '../src/scheduler/refresh-queue.js';
import { RedisKeys } from '../src/store/redis-keys.js';
import { startDelayProxy } from './delay-proxy.js';
import { TokenStore } from '../src/store/token-store.js';
import type { OpenLoopResult } from './open-loop.js';
import { BENCH_API_KEY, BENCH_APP_ID, BENCH_APP_SECRET, Child, autocannon, brokerEnv, quantile, sleep, sortNumbers, waitForHttp, wrk, wrkInstalled } from './support.js';

const { values: argv } = parseArgs({
  options: {
    only: { type: 'string', default: 'serve,latency,cold,scale,cluster,stream' },
    /** Token-stream subscribers of the fan-out section. */
    subscribers: { type: 'string', default: '1000' },
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
const CONNECTIONS = 50;
const AUTH = { authorization: `Bearer ${BENCH_API_KEY}` };
const HARD_LIMIT_MS = 570_000;

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

async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 'NaN') + Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 'NaN');
}

/**
 * 4. Scheduler scale. (a) CHANNELS channels made warm through the production path with a 3600 s lifetime:
 * Redis memory per warm channel. (b) With those jobs in the queue, a time-compressed set — 36 s tokens
 * refreshed 3 s before expiry, the defaults 3600/300 divided by 100, jitter included — refreshed by a real
 * worker under the real fleet-wide PolyV limit: timing error, calls per channel-hour, worker CPU.
 */
async function scale(redis: Redis, redisUrl: string, simUrl: string, sim: Child): Promise<void> {
  log(`\n4. scheduler scale: ${CHANNELS} warm channels`);
  const prefix = 'ptb'; // the default, so key names are as long as in production
  const env = brokerEnv(redisUrl, simUrl, { BROKER_ROLE: 'api', BROKER_REDIS_PREFIX: prefix, LOG_LEVEL: 'error' });
  const seeder = await Child.start(dist('scale-seed.js'), [], env);
  // Half the channels with Redis' default encoding limits, half with hash-max-listpack-value 256: BullMQ's
  // job hash has an `opts` value longer than the default 64 bytes, which turns the whole hash into a
  // hashtable (several hundred bytes more per job).
  const half = Math.floor(CHANNELS / 2);
  const k = new RedisKeys(prefix);
  const usage = async (key: string) => Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
  const jobKey = (ch: string) => `${k.bullPrefix()}:refresh:${refreshJobId(BENCH_APP_ID, ch)}`;
  const original = await redis.config('GET', 'hash-max-listpack-value');
  const measured: Array<{ label: string; perChannel: number; parts: Record<string, number> }> = [];
  for (const [label, from, count, listpackValue] of [
    ['Redis defaults (hash-max-listpack-value 64)', 10_000_000, half, '64'],
    ['hash-max-listpack-value 256', 10_000_000 + half, CHANNELS - half, '256'],
  ] as const) {
    await redis.config('SET', 'hash-max-listpack-value', listpackValue);
    const mem0 = await usedMemory(redis);
    const keys0 = await redis.dbsize();
    const seeded = await seeder.request<{ ms: number; failures: number }>('seed', { from, count, concurrency: 200 });
    // The fleet-wide limiter remembers calls for 10 s: let those of the seeding expire (steady state, and
    // what follows starts with the whole fleet limit).
    await sleep(11_000);
    const mem1 = await usedMemory(redis);
    const keys1 = await redis.dbsize();
    const ch = String(from);
    const parts = {
      token: await usage(k.token(BENCH_APP_ID, ch)),
      status: await usage(k.status(BENCH_APP_ID, ch)),
      budget: await usage(k.budget(BENCH_APP_ID, ch)),
      job: await usage(jobKey(ch)),
    };
    measured.push({ label, perChannel: (mem1 - mem0) / count, parts });
    log(`   ${label}: warmed ${count} channels in ${fmt(seeded.ms / 1000, 1)} s (${fmt(count / (seeded.ms / 1000), 0)}/s, ${seeded.failures} failures), ${keys1 - keys0} keys, ${fmt((mem1 - mem0) / count, 0)} B per channel`);
    log(`     MEMORY USAGE of one channel: token ${parts.token} B, status ${parts.status} B, budget ${parts.budget} B, BullMQ job ${parts.job} B`);
  }
  log(`     shared, per channel: warm set ${fmt((await usage(k.warm(BENCH_APP_ID))) / CHANNELS, 0)} B, delayed zset ${fmt((await usage(`${k.bullPrefix()}:refresh:delayed`)) / CHANNELS, 0)} B, events stream ${fmt((await usage(`${k.bullPrefix()}:refresh:events`)) / CHANNELS, 0)} B`);
  for (const m of measured) {
    row(`Redis memory per warm channel, ${m.label} (bytes)`, fmt(m.perChannel, 0), '1 KiB = 1024', fmt(m.perChannel / 1024), '<= 1024', m.perChannel <= 1024);
  }

  // (b) the time-compressed refresh run
  const N = 3000;
  const E = 36;
  const B = 3;
  const cycleMs = (E - B) * 1000;
  const worker = await Child.start(dist('scale-worker.js'), [], {
    ...env,
    BROKER_ROLE: 'worker',
    BROKER_TOKEN_EXPIRE_SECONDS: String(E),
    BROKER_REFRESH_BEFORE_SECONDS: String(B),
    BROKER_MIN_TTL_SECONDS: '1',
    BROKER_GLOBAL_LIMIT_PER_10S: '1500',
    BROKER_RECONCILE_INTERVAL_SECONDS: '3600',
  });
  await sim.request('reset');
  const t0 = Date.now();
  log(`   refresh run: ${N} channels with ${E} s tokens refreshed ${B} s before expiry, made warm at ${fmt(N / (cycleMs / 1000), 0)}/s`);
  await seeder.request('warm', { from: 20_000_000, count: N, ratePerSec: N / (cycleMs / 1000) });
  // Steady state: from the first scheduled refresh on, two whole cycles.
  const windowFrom = t0 + cycleMs;
  const windowTo = windowFrom + 2 * cycleMs;
  await sleep(Math.max(0, windowFrom - Date.now()));
  const cpuA = await worker.request<NodeJS.CpuUsage>('cpu');
  const redisCpuA = await redisCpuSeconds(redis);
  await sleep(Math.max(0, windowTo - Date.now()));
  const cpuB = await worker.request<NodeJS.CpuUsage>('cpu');
  const redisCpuB = await redisCpuSeconds(redis);
  await sleep(2000);
  const counted = await sim.request<{ calls: number; channels: number }>('count', { from: windowFrom, to: windowTo, prefix: '2' });
  const timing = await worker.request<{ count: number; p1: number; p50: number; p99: number; max: number; absP99: number }>('timing', { from: t0, to: windowTo });
  const processedJob = await usage(jobKey('20000000'));
  await worker.stop();
  await seeder.stop();
  await redis.config('SET', 'hash-max-listpack-value', original[1] ?? '64');
  log(`   a job hash after its runs (hash-max-listpack-value 256): ${processedJob} B (fields added by the worker: processedOn, attempts)`);

  const compressedHours = (windowTo - windowFrom) / (E * 1000);
  const perChannelHour = counted.calls / N / compressedHours;
  const expected = 3600 / (3600 - 300 - 15);
  const cpuMs = (cpuB.user - cpuA.user + cpuB.system - cpuA.system) / 1000;
  log(`   ${timing.count} refresh jobs timed: error p1 ${fmt(timing.p1, 0)} ms, p50 ${fmt(timing.p50, 0)} ms, p99 ${fmt(timing.p99, 0)} ms, max ${fmt(timing.max, 0)} ms`);
  log(`   steady window: ${counted.calls} PolyV calls for ${counted.channels} channels in ${fmt((windowTo - windowFrom) / 1000, 0)} s = ${fmt(compressedHours, 2)} compressed hours`);
  row('refresh timing error |p99| (ms)', fmt(timing.absP99, 0), 'due time (nextRefreshAt)', '', '< 1000', timing.absP99 < 1000);
  row('PolyV calls per channel-hour (3600/300, compressed x100)', fmt(perChannelHour, 3), `policy ${fmt(expected, 3)} = 3600 / (3600 - 300 - mean jitter 15)`, fmt(perChannelHour / expected), '<= 1.1', perChannelHour <= 1.1);
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
