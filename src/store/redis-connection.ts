import type { ConnectionOptions as BullmqConnectionOptions } from 'bullmq';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Logger } from '../lib/logger.js';
import type { RedisClient } from './redis-scripts.js';
import type { RedisClusterDeployment, RedisDeployment, RedisNodeAddress, RedisSentinelDeployment } from '../config/redis-deployment.js';
import { maskRedisUrl, redisTlsOptions, type RedisTlsSettings } from './redis-security.js';

export type RedisPurpose = 'commands' | 'bullmq';

export type { RedisClusterDeployment, RedisDeployment, RedisNodeAddress, RedisNodeSecurity, RedisSentinelDeployment } from '../config/redis-deployment.js';

/** Where the broker's Redis is: one server at a URL (REDIS_URL or the embedded one), a Cluster, or Sentinel. */
export type RedisTarget = { readonly kind: 'url'; readonly url: string; readonly tls: RedisTlsSettings } | RedisDeployment;

/**
 * What each purpose needs, whatever the deployment: `commands` connections fail fast (a request should get
 * a 503, not hang while Redis is away); `bullmq` connections retry forever, as BullMQ workers require.
 */
function purposeOptions(purpose: RedisPurpose): RedisOptions {
  if (purpose === 'bullmq') return { maxRetriesPerRequest: null };
  return { maxRetriesPerRequest: 1, enableOfflineQueue: true, connectTimeout: 2000, commandTimeout: 2000 };
}

/** Waits between reconnection attempts: 200 ms more each time, at most 2 s. */
const reconnectDelay = (times: number) => Math.min(times * 200, 2000);

/**
 * ioredis options for a URL. `commands` connections fail fast (a request should get a 503, not hang while
 * Redis is away); `bullmq` connections retry forever, as BullMQ workers require.
 */
export function redisOptions(url: string, purpose: RedisPurpose, tls: RedisTlsSettings = {}): RedisOptions {
  const u = new URL(url);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  const opts: RedisOptions = {
    host: u.hostname,
    port: u.port === '' ? 6379 : Number(u.port),
    db: Number.isInteger(db) ? db : 0,
    username: u.username === '' ? undefined : decodeURIComponent(u.username),
    password: u.password === '' ? undefined : decodeURIComponent(u.password),
    connectionName: `polyv-token-broker:${purpose}`,
    retryStrategy: reconnectDelay,
    ...(u.protocol === 'rediss:' ? { tls: redisTlsOptions(u.hostname, tls) } : {}),
    ...purposeOptions(purpose),
  };
  return opts;
}

/**
 * Whether a command failed because Redis could not serve it (down, frozen, restarting, loading its AOF, a
 * cluster failing over), as ioredis reports it on `commands` connections. Such a failure is answered 503
 * `not_ready`, not 500: it is an outage, not a bug.
 */
export function isRedisUnavailableError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return (
    err.name === 'MaxRetriesPerRequestError' ||
    err.message === 'Command timed out' ||
    err.message === 'Connection is closed.' ||
    err.message.startsWith("Stream isn't writeable") ||
    err.message.startsWith("Cluster isn't ready") ||
    err.message.startsWith('Failed to refresh slots cache') ||
    err.message.startsWith('Too many Cluster redirections') ||
    err.message.startsWith('All sentinels are unreachable') ||
    /^(LOADING|BUSY|CLUSTERDOWN|TRYAGAIN|MASTERDOWN) /.test(err.message)
  );
}

/** Node TLS options for Cluster nodes or a Sentinel-managed master, whose host names come from Redis itself. */
function deploymentTls(tls: RedisTlsSettings): { ca?: string } {
  // No servername: each connection verifies the certificate against the host it dials (name or IP address).
  return tls.ca === undefined ? {} : { ca: tls.ca };
}

/** ioredis options of one data-node connection of a Cluster, or of the Sentinel-managed master. */
function nodeOptions(d: RedisDeployment, purpose: RedisPurpose): RedisOptions {
  return {
    username: d.username,
    password: d.password,
    connectionName: `polyv-token-broker:${purpose}`,
    ...(d.tls === undefined ? {} : { tls: deploymentTls(d.tls) }),
    ...purposeOptions(purpose),
  };
}

/**
 * ioredis options for a master found through Sentinel: ioredis asks the Sentinels for the master's address,
 * and asks again (and reconnects) after a failover. REDIS_TLS covers the Sentinels and the master alike.
 */
export function sentinelRedisOptions(d: RedisSentinelDeployment, purpose: RedisPurpose): RedisOptions {
  return {
    ...nodeOptions(d, purpose),
    sentinels: d.sentinels.map((s) => ({ host: s.host, port: s.port })),
    name: d.masterName,
    sentinelPassword: d.sentinelPassword,
    retryStrategy: reconnectDelay,
    // A connection still on a demoted master gets READONLY: reconnect (ioredis asks the Sentinels again) and resend.
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
    ...(d.tls === undefined ? {} : { enableTLSForSentinelMode: true, sentinelTLS: deploymentTls(d.tls) }),
  };
}

/**
 * ioredis Cluster options. `commands` clusters do not queue commands while the cluster is unreachable (an
 * HTTP request gets its 503 at once; single nodes time out after `commandTimeout`), `bullmq` ones do.
 */
export function clusterOptions(d: RedisClusterDeployment, purpose: RedisPurpose): ClusterOptions {
  // Per-node offline queues are ioredis's business in a Cluster (its type forbids the option there).
  const { enableOfflineQueue: _ignored, ...perNode } = nodeOptions(d, purpose);
  return {
    redisOptions: perNode,
    clusterRetryStrategy: reconnectDelay,
    enableOfflineQueue: purpose === 'bullmq',
    slotsRefreshTimeout: 2000,
    lazyConnect: true,
  };
}

/** The ioredis client (not yet connected) for a purpose: a Cluster for REDIS_CLUSTER_NODES, else one connection. */
export function createRedisClient(target: RedisTarget, purpose: RedisPurpose, logger: Logger): RedisClient {
  let client: RedisClient;
  if (target.kind === 'url') client = new Redis({ ...redisOptions(target.url, purpose, target.tls), lazyConnect: true });
  else if (target.kind === 'cluster') client = new Cluster(target.nodes.map((n) => ({ host: n.host, port: n.port })), clusterOptions(target, purpose));
  else client = new Redis({ ...sentinelRedisOptions(target, purpose), lazyConnect: true });
  // An unhandled 'error' event would crash the process; one line per 5 s is enough while Redis is away.
  let lastLogged = 0;
  const log = (err: Error) => {
    const now = Date.now();
    if (now - lastLogged > 5000) {
      lastLogged = now;
      logger.warn({ purpose, err: err.message }, 'redis connection error');
    }
  };
  client.on('error', log);
  if (client instanceof Cluster) client.on('node error', log);
  return client;
}

/**
 * A second connection like `client` for the pub/sub subscriber (it enters subscriber mode), not yet
 * connected. On a Cluster, ioredis subscribes on one node; PUBLISH reaches every node of a Cluster.
 */
export function duplicateForSubscriber(client: RedisClient, connectionName: string): RedisClient {
  if (client instanceof Cluster) {
    return client.duplicate(undefined, {
      lazyConnect: true,
      enableOfflineQueue: true,
      redisOptions: { ...client.options.redisOptions, connectionName },
    });
  }
  return client.duplicate({ autoResubscribe: false, lazyConnect: true, connectionName });
}

/** BullMQ's connection for Queue and Worker, and how to close what the broker (not BullMQ) owns. */
export interface BullmqRedis {
  readonly connection: BullmqConnectionOptions;
  close(): Promise<void>;
  /** Drops the connection at once (when close() does not end: Redis unreachable). */
  drop(): void;
}

/**
 * BullMQ needs an ioredis Cluster instance for a Cluster (options alone make it open a single connection);
 * its queue prefix is hash-tagged, so every queue key lives in one slot. Queue and Worker share this
 * instance (the Worker duplicates it for its blocking connection); the broker closes it after both. For one
 * server or Sentinel, BullMQ opens and closes its own connections from options.
 */
export function createBullmqRedis(target: RedisTarget, logger: Logger): BullmqRedis {
  const nothingToClose = { close: async () => undefined, drop: () => undefined };
  // retryStrategy restated: ioredis 6 types it as possibly null, BullMQ 6's options as a function only.
  if (target.kind === 'url') {
    return { connection: { ...redisOptions(target.url, 'bullmq', target.tls), retryStrategy: reconnectDelay }, ...nothingToClose };
  }
  if (target.kind === 'sentinel') {
    return { connection: { ...sentinelRedisOptions(target, 'bullmq'), retryStrategy: reconnectDelay }, ...nothingToClose };
  }
  const cluster = createRedisClient(target, 'bullmq', logger);
  return { connection: cluster, close: () => closeRedis(cluster), drop: () => cluster.disconnect() };
}

/** Quits gracefully, or drops the connection when that fails (or it never connected). */
export async function closeRedis(client: RedisClient): Promise<void> {
  if (client.status === 'wait' || client.status === 'end') {
    client.disconnect();
    return;
  }
  await client.quit().then(
    () => undefined,
    () => client.disconnect(),
  );
}

/**
 * Whether Redis answers: PING on one server; on a Cluster, PING on every master, since each serves a share
 * of the channels.
 */
export async function pingRedis(client: RedisClient): Promise<void> {
  if (client instanceof Cluster) {
    const masters = client.nodes('master');
    if (client.status !== 'ready' || masters.length === 0) throw new Error(`Redis Cluster is ${client.status}`);
    await Promise.all(masters.map((node) => node.ping()));
    return;
  }
  await client.ping();
}

/** How to name the target in messages: the variable and its value, with any password masked. */
export function describeRedisTarget(target: RedisTarget): string {
  const list = (nodes: readonly RedisNodeAddress[]) =>
    nodes.map((n) => `${n.host.includes(':') ? `[${n.host}]` : n.host}:${n.port}`).join(',');
  if (target.kind === 'cluster') return `REDIS_CLUSTER_NODES ${list(target.nodes)}`;
  if (target.kind === 'sentinel') return `REDIS_SENTINELS ${list(target.sentinels)} (master ${target.masterName})`;
  return `REDIS_URL ${maskRedisUrl(target.url)}`;
}

/**
 * The Redis the broker uses: the Cluster or Sentinel deployment of the configuration when there is one,
 * else `url` (REDIS_URL, or the embedded server the caller started).
 */
export function resolveRedisTarget(
  settings: { readonly redisDeployment: RedisDeployment | undefined; readonly redisTls: RedisTlsSettings },
  url: string | undefined,
): RedisTarget {
  if (settings.redisDeployment !== undefined) return settings.redisDeployment;
  if (url === undefined) throw new Error('no Redis: give REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS');
  return { kind: 'url', url, tls: settings.redisTls };
}
