import { Cluster, Redis } from 'ioredis';
import {
  clusterOptions,
  describeRedisTarget,
  redisOptions,
  sentinelRedisOptions,
  type RedisClusterDeployment,
  type RedisTarget,
} from './redis-connection.js';
import { RedisKeys } from './redis-keys.js';
import type { RedisClient } from './redis-scripts.js';

function hintFor(reason: string, target: RedisTarget): string {
  if (/WRONGPASS|NOAUTH|invalid password|invalid username/i.test(reason)) {
    if (target.kind === 'url') return ' (check the user name and password in REDIS_URL)';
    if (target.kind === 'cluster') return ' (check REDIS_USERNAME and REDIS_PASSWORD)';
    return ' (check REDIS_USERNAME and REDIS_PASSWORD for the master, REDIS_SENTINEL_PASSWORD for the Sentinels)';
  }
  if (/NOPERM/.test(reason)) {
    return ' (the Redis ACL user may not use a command or the keys under BROKER_REDIS_PREFIX: see README, Security)';
  }
  if (/certificate|self[- ]signed|CERT_|altnames|SSL|TLS/i.test(reason)) {
    return target.kind === 'url'
      ? ' (set REDIS_TLS_CA_FILE to the CA that signed the Redis server certificate, and use a host name the certificate names)'
      : ' (set REDIS_TLS_CA_FILE to the CA that signed the Redis certificates; they must name the addresses the nodes announce)';
  }
  if (/cluster support disabled/i.test(reason)) {
    return ' (REDIS_CLUSTER_NODES must name nodes of a Redis Cluster, started with cluster-enabled yes; use REDIS_URL for one server)';
  }
  return '';
}

/**
 * Of the errors one attempt produced, the one that says what to fix: a refusal a hint covers (a node's
 * WRONGPASS or certificate error, say) over ioredis's generic "Connection is closed." that follows it.
 */
function mostTelling(errors: readonly Error[], target: RedisTarget): Error {
  const generic = /^(Connection is closed|Failed to refresh slots cache|None of startup nodes|All sentinels are unreachable)/;
  const explained = errors.find((e) => hintFor(reasonOf(e), target) !== '');
  return explained ?? errors.find((e) => !generic.test(e.message)) ?? errors[0]!;
}

/** A Cluster's error with the node error it wraps (ioredis hides a node's refusal behind a generic one). */
function reasonOf(err: Error): string {
  const node = (err as Error & { lastNodeError?: unknown }).lastNodeError;
  return node instanceof Error && node.message !== '' && node.message !== err.message ? `${err.message} ${node.message}` : err.message;
}

/** Redis refused or could not be reached at start-up; the message names the setting, never a password. */
export class RedisStartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisStartupError';
  }
}

/** Keys the broker must be allowed to use (an ACL that does not cover its prefix fails at start-up). */
export function probeKeys(prefix: string): string[] {
  const keys = new RedisKeys(prefix);
  return [keys.globalCounter(), `${keys.bullPrefix()}:refresh:meta`];
}

/**
 * Connects and checks that Redis accepts the broker's commands on its keys, so a wrong password, a missing
 * ACL permission or an untrusted certificate stops start-up with a message saying which setting to fix,
 * instead of ioredis's "Connection is closed." and a broker that retries forever. Only a permission error
 * on the probe keys counts: a Cluster redirection (MOVED) means the key lives elsewhere, not that it is
 * forbidden. On a Cluster every master is asked, and the cluster must say `cluster_state:ok`.
 */
export async function connectOrExplain(redis: RedisClient, target: RedisTarget, keys: readonly string[] = []): Promise<void> {
  const seen: Error[] = [];
  const onError = (err: Error) => {
    if (seen.length < 20) seen.push(err);
  };
  redis.on('error', onError);
  redis.on('node error', onError);
  try {
    await redis.connect();
    await redis.ping();
    if (redis instanceof Cluster) {
      for (const node of redis.nodes('master')) await node.ping();
      const info = String(await redis.cluster('INFO'));
      if (!/cluster_state:ok/.test(info)) throw new Error('the cluster reports cluster_state:fail (are all slots covered?)');
    }
    for (const key of keys) {
      await redis.exists(key).catch((err: unknown) => {
        if (err instanceof Error && /NOPERM/.test(err.message)) throw err;
      });
    }
  } catch (err) {
    let reason = err instanceof Error && /NOPERM/.test(err.message) ? err.message : reasonOf(mostTelling([...seen, err as Error], target));
    if (target.kind === 'cluster' && hintFor(reason, target) === '') reason = (await diagnoseClusterNodes(target)) ?? reason;
    throw new RedisStartupError(`cannot use Redis at ${describeRedisTarget(target)}: ${reason}${hintFor(reason, target)}`);
  } finally {
    redis.off('error', onError);
    redis.off('node error', onError);
  }
}

/**
 * ioredis's Cluster reports a node it cannot use (a certificate it does not trust, say) only as
 * "Connection is closed.": ask each seed node on its own connection, which says why.
 */
async function diagnoseClusterNodes(target: RedisClusterDeployment): Promise<string | undefined> {
  const perNode = clusterOptions(target, 'commands').redisOptions ?? {};
  for (const node of target.nodes) {
    const probe = new Redis({ ...perNode, host: node.host, port: node.port, lazyConnect: true, retryStrategy: () => null });
    let refusal: Error | undefined;
    probe.on('error', (e: Error) => {
      refusal ??= e;
    });
    try {
      await probe.connect();
      await probe.cluster('INFO');
    } catch (err) {
      const reason = (refusal ?? (err as Error)).message;
      if (hintFor(reason, target) !== '') return reason;
    } finally {
      probe.disconnect();
    }
  }
  return undefined;
}

/** A client for the start-up check alone: no reconnects, so a refusal ends the attempt at once. */
function startupClient(target: RedisTarget): RedisClient {
  if (target.kind === 'cluster') return new Cluster([...target.nodes], { ...clusterOptions(target, 'commands'), clusterRetryStrategy: () => null });
  const base = target.kind === 'url' ? redisOptions(target.url, 'commands', target.tls) : sentinelRedisOptions(target, 'commands');
  return new Redis({ ...base, lazyConnect: true, retryStrategy: () => null, sentinelRetryStrategy: () => null });
}

/**
 * The start-up check on its own short-lived connection, before any long-lived client (BullMQ's above all,
 * which retries forever) is created.
 */
export async function checkRedisAtStartup(target: RedisTarget, options: { redisPrefix: string }): Promise<void> {
  const redis = startupClient(target);
  try {
    await connectOrExplain(redis, target, probeKeys(options.redisPrefix));
  } finally {
    redis.disconnect();
  }
}
