import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServerHandle } from '../src/infra/redis-server.js';
import { startBroker, type RunningBroker } from '../src/main.js';
import type { PolyvSimulator } from '../src/sim/polyv-simulator.js';
import { RedisStartupError } from '../src/store/redis-startup-check.js';
import { TEST_ACCOUNT, api, eventually, startSim, testConfig, uniquePrefix, type TokenBody } from './support/harness.js';
import { startRedisSentinel, type RedisSentinelHandle } from './support/redis-cluster.js';

/**
 * The broker through Redis Sentinel: a password-protected master and replica, one Sentinel (with a password
 * of its own) on loopback, the broker started as `serve` starts it, and a failover after the master dies,
 * which the broker rides out.
 */


const MASTER_NAME = 'ptbmaster';
const REDIS_PASSWORD = 'sentinel-data-pw-4e8a1c';
const SENTINEL_PASSWORD = 'sentinel-own-pw-93b2d7';

let sim: PolyvSimulator;
let dir: string;
let master: RedisServerHandle;
let replica: RedisServerHandle;
let sentinel: RedisSentinelHandle;
let sentinelClient: Redis;
let broker: RunningBroker | undefined;
const prefix = uniquePrefix();

function sentinelEnv(env: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: '',
    REDIS_SENTINELS: `127.0.0.1:${sentinel.port}`,
    REDIS_SENTINEL_NAME: MASTER_NAME,
    REDIS_PASSWORD,
    REDIS_SENTINEL_PASSWORD: SENTINEL_PASSWORD,
    BROKER_REDIS_PREFIX: prefix,
    ...env,
  };
}

/** The port Sentinel currently names as the master. */
async function masterPort(): Promise<number> {
  const addr = (await sentinelClient.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME)) as [string, string];
  return Number(addr[1]);
}

/** INFO replication of the server on `port`. */
async function role(port: number): Promise<string> {
  const r = new Redis({ host: '127.0.0.1', port, password: REDIS_PASSWORD, maxRetriesPerRequest: 1 });
  try {
    return await r.info('replication');
  } finally {
    r.disconnect();
  }
}

async function keysOn(port: number): Promise<string[]> {
  const r = new Redis({ host: '127.0.0.1', port, password: REDIS_PASSWORD, maxRetriesPerRequest: 1 });
  try {
    return await r.keys(`${prefix}:*`);
  } finally {
    r.disconnect();
  }
}

beforeAll(async () => {
  sim = await startSim();
  dir = mkdtempSync(join(tmpdir(), 'ptb-redis-sentinel-'));
  const auth = ['--requirepass', REDIS_PASSWORD, '--masterauth', REDIS_PASSWORD];
  master = await startRedisServer({ dir: join(dir, 'master'), appendOnly: false, args: [...auth, '--repl-diskless-sync-delay', '0'] });
  replica = await startRedisServer({
    dir: join(dir, 'replica'),
    appendOnly: false,
    args: [...auth, '--replicaof', '127.0.0.1', String(master.port)],
  });
  sentinel = await startRedisSentinel({
    dir: join(dir, 'sentinel'),
    masterName: MASTER_NAME,
    masterPort: master.port,
    masterPassword: REDIS_PASSWORD,
    password: SENTINEL_PASSWORD,
  });
  sentinelClient = new Redis({ host: '127.0.0.1', port: sentinel.port, password: SENTINEL_PASSWORD });
  await eventually(async () => (await role(replica.port)).includes('master_link_status:up'), 10_000);
}, 30_000);

afterAll(async () => {
  await broker?.stop();
  sentinelClient?.disconnect();
  await sentinel?.stop();
  await Promise.all([master?.stop(), replica?.stop()]);
  await sim?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('Redis Sentinel', () => {
  it('when REDIS_SENTINELS and REDIS_SENTINEL_NAME are set, then the broker reads and writes the master Sentinel names, BullMQ included', async () => {
    broker = await startBroker(testConfig(sim.url, sentinelEnv({ BROKER_ROLE: 'all', BROKER_CHANNELS: '1000003' })));
    expect(broker.redisUrl).toBe(`REDIS_SENTINELS 127.0.0.1:${sentinel.port} (master ${MASTER_NAME})`);

    const res = await api<TokenBody>(broker.url, '/v1/channels/1000001/token');
    expect(res.status).toBe(200);
    expect(sim.checkToken('channel', '1000001', res.body.channelToken)).toEqual({ valid: true });
    // The warm channel is fetched by the BullMQ worker, on its own connections through Sentinel.
    const warm = await eventually(() => broker!.app.store.read(TEST_ACCOUNT.appId, '1000003'));
    expect(sim.checkToken('channel', '1000003', warm.token)).toEqual({ valid: true });
    expect((await api(broker.url, '/readyz', { key: null })).status).toBe(200);

    expect(await masterPort()).toBe(master.port);
    expect(await keysOn(master.port)).toContain(`${prefix}:{${TEST_ACCOUNT.appId}:1000001}:token`);
  });

  it('when the master dies, then Sentinel promotes the replica and the broker follows it: it keeps serving and writing', async () => {
    expect(broker).toBeDefined();
    const running = broker!;
    const before = await api<TokenBody>(running.url, '/v1/channels/1000001/token');
    // Replication is asynchronous: let the replica confirm every write so far, so the failover loses none.
    const direct = new Redis({ host: '127.0.0.1', port: master.port, password: REDIS_PASSWORD });
    try {
      expect(await direct.wait(1, 5000)).toBe(1);
    } finally {
      direct.disconnect();
    }

    const killedAt = Date.now();
    await master.stop();
    await eventually(async () => (await masterPort()) === replica.port, 15_000, 100);
    const promotedAt = Date.now();

    // A cold channel after the failover: fetched and written on the new master.
    const after = await eventually(async () => {
      const r = await api<TokenBody>(running.url, '/v1/channels/1000002/token');
      return r.status === 200 ? r : null;
    }, 15_000, 100);
    const servingAt = Date.now();
    expect(sim.checkToken('channel', '1000002', after.body.channelToken)).toEqual({ valid: true });
    expect(await keysOn(replica.port)).toContain(`${prefix}:{${TEST_ACCOUNT.appId}:1000002}:token`);
    // What was written before the failover is still there: no refetch.
    expect((await api<TokenBody>(running.url, '/v1/channels/1000001/token')).body.channelToken).toBe(before.body.channelToken);
    expect(sim.calls({ endpoint: 'get-channel-token', channelId: '1000001' })).toHaveLength(1);
    await eventually(async () => (await api(running.url, '/readyz', { key: null })).status === 200, 10_000, 100);
    // Sentinel needs down-after-milliseconds (2 s) to call the master down; the broker then catches up quickly.
    expect(servingAt - promotedAt).toBeLessThan(5000);
    expect(promotedAt - killedAt).toBeLessThan(10_000);
  });

  it('when REDIS_SENTINEL_PASSWORD is wrong, then start-up fails naming REDIS_SENTINELS, never the password', async () => {
    const err = await startBroker(testConfig(sim.url, sentinelEnv({ REDIS_SENTINEL_PASSWORD: 'wrong-sentinel-pw-1' }))).then(
      async (b) => {
        await b.stop();
        return new Error('started');
      },
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(RedisStartupError);
    expect(err.message).toContain(`REDIS_SENTINELS 127.0.0.1:${sentinel.port}`);
    expect(err.message).not.toContain('wrong-sentinel-pw-1');
    expect(err.message).not.toContain(REDIS_PASSWORD);
  });
});
