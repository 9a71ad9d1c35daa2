import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { channelsCommand, connectForOncall } from '../src/cli/oncall-commands.js';
import { loadConfig } from '../src/config/config.js';
import { startBroker as startBrokerProcess } from '../src/main.js';
import type { PolyvSimulator, SimAccount } from '../src/sim/polyv-simulator.js';
import { RedisStartupError } from '../src/store/redis-startup-check.js';
import { LogCapture, api, eventually, redisUrl, startBroker, startSim, testConfig, uniquePrefix, type TestBroker, type TokenBody, type ErrorBody, configProblems } from './support/harness.js';
import { makeTestCertificates, startRedisCluster, type RedisClusterHandle, type TestCertificates } from './support/redis-cluster.js';

/**
 * The broker against a real Redis Cluster of three masters on loopback (password-protected), started by this
 * file: two API replicas and a worker, the PolyV simulator over real HTTP, and assertions on what each master
 * holds.
 */


/** The `default` user's password (the cluster's own links, redis-cli, and this file's assertions). */
const PASSWORD = 'cluster-pw-7c1e5a9d3b64';
/** The broker's ACL user: README's least-privilege rule, for the two key prefixes this file uses. */
const BROKER_USER = 'broker';
const BROKER_PASSWORD = 'cluster-broker-pw-2f9e4b1a';
const ACCOUNT: SimAccount = {
  appId: 'clusterapp1',
  appSecret: 'cluster-secret-0123456789abcdef',
  channels: Array.from({ length: 40 }, (_, i) => String(3_000_001 + i)),
};

let sim: PolyvSimulator;
let dir: string;
let cluster: RedisClusterHandle;
let a: TestBroker;
let b: TestBroker;
const prefix = uniquePrefix();
const refreshPrefix = uniquePrefix();
const extraBrokers: TestBroker[] = [];
/** Everything replica a logs, at every level. */
const logsOfA = new LogCapture('trace');
/** One channel per master, chosen by the pub/sub test. */
const oneChannelPerMaster: string[] = [];

/** The environment of a broker on the cluster: REDIS_URL blank (unset), the seeds, the password. */
function clusterEnv(env: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: '',
    REDIS_CLUSTER_NODES: cluster.seeds,
    REDIS_USERNAME: BROKER_USER,
    REDIS_PASSWORD: BROKER_PASSWORD,
    POLYV_APP_ID: ACCOUNT.appId,
    POLYV_APP_SECRET: ACCOUNT.appSecret,
    BROKER_REDIS_PREFIX: prefix,
    ...env,
  };
}

/** The API replicas' settings: a small budget, and an in-process cache that only pub/sub can empty in time. */
const REPLICA_ENV = { BROKER_ROLE: 'api', BROKER_CHANNEL_BUDGET_PER_HOUR: '3', BROKER_LOCAL_CACHE_MAX_AGE_MS: '60000' };

const channelCalls = (channelId: string) => sim.calls({ endpoint: 'get-channel-token', channelId }).filter((c) => c.code === 200);

/** Port of the master serving `key`'s slot, from the cluster's own slot table. */
async function masterPortOf(key: string): Promise<number> {
  const [first] = cluster.masters;
  const slot = Number(await first!.cluster('KEYSLOT', key));
  const ranges = await first!.cluster('SLOTS');
  const range = ranges.find(([from, to]) => slot >= from && slot <= to);
  return Number(range![2]![1]);
}

/** Every key under `pattern` on one master (SCAN; a Cluster node only knows its own keys). */
async function scanNode(node: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys;
}

beforeAll(async () => {
  sim = await startSim({ accounts: [ACCOUNT] });
  dir = mkdtempSync(join(tmpdir(), 'ptb-redis-cluster-'));
  const keys = [prefix, refreshPrefix].flatMap((p) => [`~${p}:*`, `~{${p}}:*`]);
  const channels = [prefix, refreshPrefix].map((p) => `&${p}:*`);
  cluster = await startRedisCluster({
    dir,
    masters: 3,
    password: PASSWORD,
    args: ['--user', BROKER_USER, 'on', `>${BROKER_PASSWORD}`, 'resetkeys', ...keys, 'resetchannels', ...channels, '+@all', '-@dangerous', '+info'],
  });
  [a, b] = await Promise.all([
    startBroker(testConfig(sim.url, clusterEnv(REPLICA_ENV)), { logger: logsOfA.logger }),
    startBroker(testConfig(sim.url, clusterEnv(REPLICA_ENV))),
  ]);
}, 30_000);

afterAll(async () => {
  await Promise.all([a, b, ...extraBrokers].filter((x) => x !== undefined).map((x) => x.stop()));
  await cluster?.stop();
  await sim?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the broker on a 3-master Redis Cluster', () => {
  it('when both replicas start, then they report ready (every master answers) and Redis is up in the metrics', async () => {
    for (const r of [a, b]) {
      const ready = await api<{ checks: Record<string, string> }>(r.url, '/readyz', { key: null });
      expect(ready.status).toBe(200);
      expect(ready.body.checks['redis']).toBe('ok');
    }
    expect(cluster.ports).toHaveLength(3);
    const nodes = String(await cluster.masters[0]!.cluster('NODES'));
    expect(nodes.split('\n').filter((line) => line.includes('master'))).toHaveLength(3);
  });

  it('when the broker connects, then every connection authenticates as the ACL user of REDIS_USERNAME', async () => {
    const lists = await Promise.all(cluster.masters.map((m) => m.client('LIST')));
    const broker = lists.flatMap((list) => String(list).split('\n')).filter((line) => line.includes('name=polyv-token-broker'));
    expect(broker.length).toBeGreaterThan(0);
    expect(broker.filter((line) => !line.includes(` user=${BROKER_USER} `))).toEqual([]);
    const names = new Set(broker.map((line) => /name=(\S+)/.exec(line)?.[1]));
    expect([...names]).toEqual(expect.arrayContaining(['polyv-token-broker:commands', 'polyv-token-broker:bullmq']));
  });

  it('when 20 cold requests for one channel arrive on two replicas at once, then PolyV is called once and all get that token', async () => {
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => api<TokenBody>((i % 2 === 0 ? a : b).url, '/v1/channels/3000001/token')),
    );
    expect(responses.map((r) => r.status)).toEqual(Array.from({ length: 20 }, () => 200));
    expect(new Set(responses.map((r) => r.body.channelToken)).size).toBe(1);
    expect(sim.checkToken('channel', '3000001', responses[0]!.body.channelToken)).toEqual({ valid: true });
    expect(channelCalls('3000001')).toHaveLength(1);
  });

  it('when both replicas report the same rejected token many times, then one refresh replaces it, and a stale report costs nothing', async () => {
    const old = (await api<TokenBody>(a.url, '/v1/channels/3000002/token')).body.channelToken;
    const reports = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        api<TokenBody>((i % 2 === 0 ? a : b).url, '/v1/channels/3000002/token/refresh', { method: 'POST', body: { rejectedToken: old } }),
      ),
    );
    expect(reports.every((r) => r.status === 200)).toBe(true);
    const fresh = new Set(reports.map((r) => r.body.channelToken));
    expect(fresh.size).toBe(1);
    expect(fresh.has(old)).toBe(false);
    expect(sim.checkToken('channel', '3000002', [...fresh][0]!)).toEqual({ valid: true });
    expect(channelCalls('3000002')).toHaveLength(2);

    const stale = await api<TokenBody>(b.url, '/v1/channels/3000002/token/refresh', { method: 'POST', body: { rejectedToken: old } });
    expect(stale.body.channelToken).toBe([...fresh][0]);
    expect(channelCalls('3000002')).toHaveLength(2);
  });

  it('when a channel spends its hourly budget across both replicas, then the next call is refused (503) and its cached token is still served', async () => {
    expect((await api<TokenBody>(a.url, '/v1/channels/3000003/token')).status).toBe(200);
    const disposable = [
      await api<TokenBody>(b.url, '/v1/channels/3000003/token?disposable=true'),
      await api<TokenBody>(a.url, '/v1/channels/3000003/token?disposable=true'),
    ];
    expect(disposable.map((r) => r.status)).toEqual([200, 200]);
    const refused = await api<ErrorBody>(b.url, '/v1/channels/3000003/token?disposable=true');
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('budget_exhausted');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(sim.calls({ endpoint: 'get-channel-token', channelId: '3000003' })).toHaveLength(3);
    expect((await api<TokenBody>(b.url, '/v1/channels/3000003/token')).status).toBe(200);
  });

  it('when the other token kinds are asked for, then each is served valid, and a viewer token is shared by both replicas', async () => {
    const viewer = { viewerId: 'viewer-42', nickname: 'Lin' };
    const first = await api<{ token: string }>(a.url, '/v1/channels/3000004/watch-tokens', { method: 'POST', body: viewer });
    const second = await api<{ token: string }>(b.url, '/v1/channels/3000004/watch-tokens', { method: 'POST', body: viewer });
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(second.body.token).toBe(first.body.token);
    expect(sim.checkToken('watch-api', '3000004', first.body.token)).toEqual({ valid: true });
    expect(sim.calls({ endpoint: 'get-watch-api-token', channelId: '3000004' })).toHaveLength(1);

    const common = await api<{ token: string }>(b.url, '/v1/channels/3000004/common-token');
    expect(common.status).toBe(200);
    expect(sim.checkToken('common', '3000004', common.body.token)).toEqual({ valid: true });

    const url = await api<{ url: string }>(a.url, '/v1/channels/3000004/watch-urls', { method: 'POST' });
    expect(url.status).toBe(200);
    expect(sim.checkToken('watch-url', '3000004', url.body.url)).toEqual({ valid: true });
  });

  it('when a token changes on one replica, then the other drops its in-memory copy through pub/sub, whichever master published it', async () => {
    // One channel per master, so the PUBLISH (inside the write's Lua script) comes from every node in turn.
    const byMaster = new Map<number, string>();
    for (const ch of ACCOUNT.channels!.slice(10)) {
      const port = await masterPortOf(`${prefix}:{${ACCOUNT.appId}:${ch}}:token`);
      if (!byMaster.has(port)) byMaster.set(port, ch);
      if (byMaster.size === 3) break;
    }
    expect(byMaster.size).toBe(3);

    oneChannelPerMaster.push(...byMaster.values());

    for (const [port, ch] of byMaster) {
      // Fetched through a, then read by b from Redis into b's memory (after the write's own message has passed).
      expect((await api<TokenBody>(a.url, `/v1/channels/${ch}/token`)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 50));
      const before = await api<TokenBody>(b.url, `/v1/channels/${ch}/token`);
      // Changed behind the broker's back (no pub/sub message): replica b keeps serving its in-memory copy...
      const tokenKey = `${prefix}:{${ACCOUNT.appId}:${ch}}:token`;
      const node = cluster.masters[cluster.ports.indexOf(port)]!;
      await node.hset(tokenKey, 'expireTime', before.body.expireTime - 1000);
      expect((await api<TokenBody>(b.url, `/v1/channels/${ch}/token`)).body.expireTime).toBe(before.body.expireTime);

      // ...until replica a replaces the token: the message reaches b at once (its cache would hold for 60 s).
      const replaced = await api<TokenBody>(a.url, `/v1/channels/${ch}/token/refresh`, {
        method: 'POST',
        body: { rejectedToken: before.body.channelToken },
      });
      expect(replaced.body.channelToken).not.toBe(before.body.channelToken);
      const seen = await eventually(
        async () => {
          const r = await api<TokenBody>(b.url, `/v1/channels/${ch}/token`);
          return r.body.channelToken === replaced.body.channelToken ? r : null;
        },
        1500,
        20,
      );
      expect(sim.checkToken('channel', ch, seen.body.channelToken)).toEqual({ valid: true });
    }
  });

  it('when a channel is warm with short token lives, then the BullMQ worker on the cluster refreshes it ahead of expiry', async () => {
    const w = await startBroker(
      testConfig(
        sim.url,
        clusterEnv({
          BROKER_REDIS_PREFIX: refreshPrefix,
          BROKER_ROLE: 'all',
          BROKER_CHANNELS: '3000005',
          BROKER_TOKEN_EXPIRE_SECONDS: '6',
          BROKER_REFRESH_BEFORE_SECONDS: '3',
          BROKER_MIN_TTL_SECONDS: '1',
        }),
      ),
    );
    extraBrokers.push(w);
    const appId = ACCOUNT.appId;
    const first = await eventually(() => w.app.store.read(appId, '3000005'));
    const next = await eventually(async () => {
      const now = await w.app.store.read(appId, '3000005');
      return now !== null && now.token !== first.token ? now : null;
    }, 8000);
    expect(next.expireTime).toBeGreaterThan(first.expireTime);
    // Replaced before the old token expired, by the scheduled job, with nobody asking.
    expect(next.fetchedAt).toBeLessThan(first.expireTime);
    const refreshes = await w.app.metrics.refreshes.get();
    expect(refreshes.values.find((v) => v.labels['trigger'] === 'scheduled' && v.labels['outcome'] === 'success')?.value).toBeGreaterThanOrEqual(1);
    expect((await w.app.warmSet.entry(appId, '3000005')) !== null).toBe(true);

    // Every BullMQ key sits in the one slot of the `{<prefix>}` hash tag.
    const bullKeys = (await Promise.all(cluster.masters.map((m) => scanNode(m, `{${refreshPrefix}}:bull:*`)))).map((k) => k.length);
    expect(bullKeys.filter((n) => n > 0)).toHaveLength(1);
  });

  it('when the on-call CLI runs with REDIS_CLUSTER_NODES, then `channels` lists the warm channels from every master', async () => {
    const config = loadConfig({
      ...clusterEnv(),
      POLYV_BASE_URL: sim.url,
      BROKER_API_KEYS: 'oncall:oncall-key-0123456789abcdef',
      LOG_LEVEL: 'silent',
    });
    const app = await connectForOncall(config);
    const out: string[] = [];
    try {
      await channelsCommand(app, ['--json'], (line) => out.push(line));
    } finally {
      await app.stop();
    }
    const listed = JSON.parse(out.join('\n')) as { channels: Array<{ channelId: string; expireTime: number | null; callsLastHour: number }> };
    const ids = listed.channels.map((c) => c.channelId);
    expect(ids).toEqual(['3000001', '3000002', '3000003', ...oneChannelPerMaster].sort());
    expect(listed.channels.find((c) => c.channelId === '3000003')?.callsLastHour).toBe(3);
    expect(listed.channels.every((c) => c.expireTime !== null)).toBe(true);
  });

  it('when the metrics are scraped, then the gauges read every master (no cross-slot pipeline)', async () => {
    const text = await (await fetch(`${a.url}/metrics`)).text();
    expect(text).toMatch(/^polyv_broker_redis_up 1$/m);
    expect(text).toMatch(new RegExp(`^polyv_broker_warm_channels ${3 + oneChannelPerMaster.length}$`, 'm'));
    expect(text).toMatch(/^polyv_broker_channel_budget_used_max_ratio 1$/m);
  });

  it('then every channel keeps all its keys in one slot, and the channels are spread over the masters', async () => {
    const perNode = await Promise.all(cluster.masters.map((m) => scanNode(m, `${prefix}:*`)));
    const channelOwners = new Map<string, Set<number>>();
    perNode.forEach((keys, node) => {
      for (const key of keys) {
        const tag = /^[^{]*\{([^}]*)\}/.exec(key)?.[1];
        expect(tag, key).toBeDefined();
        const owners = channelOwners.get(tag!) ?? new Set<number>();
        owners.add(node);
        channelOwners.set(tag!, owners);
      }
    });
    expect(channelOwners.get(`${ACCOUNT.appId}:3000004`)?.size).toBe(1);
    for (const [tag, owners] of channelOwners) expect(owners.size, tag).toBe(1);
    expect(perNode.filter((keys) => keys.length > 0).length).toBe(3);
    // The channel's token, status, budget, lock and other kinds' keys: one slot.
    const keys = perNode.flat().filter((k) => k.includes(`{${ACCOUNT.appId}:3000004}`));
    expect(keys.length).toBeGreaterThanOrEqual(4);
    const slots = await Promise.all(keys.map((k) => cluster.masters[0]!.cluster('KEYSLOT', k)));
    expect(new Set(slots).size).toBe(1);
  });

  it('then no Redis password appeared in any log line of a replica, at any level', () => {
    expect(logsOfA.lines.length).toBeGreaterThan(10);
    expect(logsOfA.text).not.toContain(BROKER_PASSWORD);
    expect(logsOfA.text).not.toContain(PASSWORD);
  });
});

describe('a Redis Cluster over TLS', () => {
  let tlsCluster: RedisClusterHandle;
  let certs: TestCertificates;
  const tlsPrefix = uniquePrefix();
  const tlsEnv = (env: Record<string, string> = {}) =>
    clusterEnv({
      REDIS_CLUSTER_NODES: tlsCluster.seeds,
      REDIS_USERNAME: '',
      REDIS_PASSWORD: PASSWORD,
      REDIS_TLS: 'true',
      REDIS_TLS_CA_FILE: certs.ca,
      BROKER_REDIS_PREFIX: tlsPrefix,
      ...env,
    });

  beforeAll(async () => {
    certs = makeTestCertificates(join(dir, 'tls'));
    tlsCluster = await startRedisCluster({ dir: join(dir, 'tls-cluster'), masters: 3, password: PASSWORD, tls: certs });
  }, 30_000);
  const tlsBrokers: TestBroker[] = [];
  afterAll(async () => {
    // Brokers first: a BullMQ worker does not finish closing while its Redis is gone.
    await Promise.all(tlsBrokers.splice(0).map((x) => x.stop()));
    await tlsCluster?.stop();
  });

  it('when REDIS_TLS is true and REDIS_TLS_CA_FILE names the private CA, then HTTP, the store and the BullMQ worker all work over TLS', async () => {
    const t = await startBroker(testConfig(sim.url, tlsEnv({ BROKER_ROLE: 'all', BROKER_CHANNELS: '3000030' })));
    tlsBrokers.push(t);
    const res = await api<TokenBody>(t.url, '/v1/channels/3000031/token');
    expect(res.status).toBe(200);
    expect(sim.checkToken('channel', '3000031', res.body.channelToken)).toEqual({ valid: true });
    const warm = await eventually(() => t.app.store.read(ACCOUNT.appId, '3000030'));
    expect(sim.checkToken('channel', '3000030', warm.token)).toEqual({ valid: true });
    expect((await api(t.url, '/readyz', { key: null })).status).toBe(200);
    // The nodes have no plain-text port at all: everything above went over TLS.
    expect(String(await tlsCluster.masters[0]!.config('GET', 'port'))).toContain('0');
  });

  it('when the private CA is not given (the system CAs do not know it), then start-up fails naming REDIS_TLS_CA_FILE', async () => {
    const err = await startBrokerProcess(testConfig(sim.url, tlsEnv({ REDIS_TLS_CA_FILE: '' }))).then(
      (running) => {
        tlsBrokers.push({ app: running.app, url: running.url, stop: () => running.stop() });
        return new Error('started');
      },
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(RedisStartupError);
    expect(err.message).toContain('REDIS_TLS_CA_FILE');
    expect(err.message).not.toContain(PASSWORD);
  });
});

describe('start-up against a Cluster that refuses', () => {
  it('when REDIS_PASSWORD is wrong, then start-up fails naming REDIS_CLUSTER_NODES and REDIS_PASSWORD, never the password', async () => {
    const err = await startBrokerProcess(testConfig(sim.url, clusterEnv({ REDIS_PASSWORD: 'not-the-cluster-password' }))).then(
      (running) => {
        extraBrokers.push({ app: running.app, url: running.url, stop: () => running.stop() });
        return new Error('started');
      },
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(RedisStartupError);
    expect(err.message).toContain(`REDIS_CLUSTER_NODES ${cluster.seeds}`);
    expect(err.message).toMatch(/WRONGPASS|invalid username-password/);
    expect(err.message).toContain('REDIS_PASSWORD');
    expect(err.message).not.toContain('not-the-cluster-password');
  });

  it('when REDIS_CLUSTER_NODES names a Redis that is not a Cluster node, then start-up says so', async () => {
    const single = new URL(redisUrl());
    const err = await startBrokerProcess(
      testConfig(sim.url, clusterEnv({ REDIS_CLUSTER_NODES: `${single.hostname}:${single.port}`, REDIS_USERNAME: '', REDIS_PASSWORD: '' })),
    ).then(
      () => new Error('started'),
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(RedisStartupError);
    expect(err.message).toMatch(/cluster/i);
    expect(err.message).toContain('REDIS_CLUSTER_NODES');
  });
});

describe('configuration of Cluster and Sentinel', () => {
  const base = { POLYV_APP_ID: 'app1', POLYV_APP_SECRET: 'secret', BROKER_API_KEYS: 'svc:key-0123456789abcdef' };
  const problems = (env: Record<string, string>): string[] => configProblems({ ...base, ...env });

  it('when REDIS_CLUSTER_NODES lists seeds, then the config holds a cluster with the password and TLS settings', () => {
    const config = loadConfig(
      { ...base, REDIS_CLUSTER_NODES: '10.0.0.5:7000, redis-1.internal:7001,[::1]:7002', REDIS_USERNAME: 'broker', REDIS_PASSWORD_FILE: '/run/pw', REDIS_TLS: 'true', REDIS_TLS_CA_FILE: '/run/ca.pem' },
      { readFile: (p) => (p === '/run/pw' ? 'file-password\n' : '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n') },
    );
    expect(config.redisUrl).toBeUndefined();
    expect(config.redisDeployment).toEqual({
      kind: 'cluster',
      nodes: [
        { host: '10.0.0.5', port: 7000 },
        { host: 'redis-1.internal', port: 7001 },
        { host: '::1', port: 7002 },
      ],
      username: 'broker',
      password: 'file-password',
      tls: { ca: '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n' },
    });
  });

  it('when REDIS_SENTINELS and REDIS_SENTINEL_NAME are set, then the config holds a Sentinel deployment', () => {
    const config = loadConfig({ ...base, REDIS_SENTINELS: 's1:26379,s2:26379', REDIS_SENTINEL_NAME: 'mymaster', REDIS_SENTINEL_PASSWORD: 'spw' });
    expect(config.redisDeployment).toMatchObject({
      kind: 'sentinel',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
      ],
      masterName: 'mymaster',
      sentinelPassword: 'spw',
      tls: undefined,
    });
  });

  it.each([
    [{ REDIS_CLUSTER_NODES: '10.0.0.5:7000', REDIS_SENTINELS: 's1:26379', REDIS_SENTINEL_NAME: 'm' }, /REDIS_CLUSTER_NODES and REDIS_SENTINELS are both set/],
    [{ REDIS_CLUSTER_NODES: '10.0.0.5:7000', REDIS_URL: 'redis://r:6379' }, /REDIS_URL and REDIS_CLUSTER_NODES are both set/],
    [{ REDIS_CLUSTER_NODES: '10.0.0.5:7000,10.0.0.6' }, /^REDIS_CLUSTER_NODES entry 2 must be host:port/],
    [{ REDIS_CLUSTER_NODES: 'redis://:secret@10.0.0.5:7000' }, /^REDIS_CLUSTER_NODES must be host:port/],
    [{ REDIS_CLUSTER_NODES: '10.0.0.5:70000' }, /^REDIS_CLUSTER_NODES must be host:port with a port of 1-65535/],
    [{ REDIS_SENTINELS: 's1:26379' }, /REDIS_SENTINEL_NAME is required with REDIS_SENTINELS/],
    [{ REDIS_SENTINEL_NAME: 'mymaster' }, /REDIS_SENTINEL_NAME is set but REDIS_SENTINELS is not/],
    [{ REDIS_URL: 'redis://r:6379', REDIS_PASSWORD: 'pw' }, /REDIS_PASSWORD applies to REDIS_CLUSTER_NODES or REDIS_SENTINELS/],
    [{ REDIS_CLUSTER_NODES: '10.0.0.5:7000', REDIS_TLS: 'yes' }, /^REDIS_TLS must be true or false/],
    [{ REDIS_CLUSTER_NODES: '10.0.0.5:7000', REDIS_USERNAME: 'broker' }, /REDIS_USERNAME needs REDIS_PASSWORD/],
    [{ REDIS_CLUSTER_NODES: '10.0.0.5:7000', REDIS_PASSWORD: 'a', REDIS_PASSWORD_FILE: '/x' }, /REDIS_PASSWORD and REDIS_PASSWORD_FILE are both set/],
  ])('when the Redis variables are %o, then start-up is refused with a line naming the variable', (env, expected) => {
    const lines = problems(env);
    expect(lines.some((line) => expected.test(line)), lines.join('\n')).toBe(true);
    expect(lines.join('\n')).not.toContain('secret@');
  });
});
