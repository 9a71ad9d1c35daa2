import { Redis } from 'ioredis';
import { redisOptions } from './redis-connection.js';
import { RedisKeys } from './redis-keys.js';
import { maskRedisUrl, type RedisTlsSettings } from './redis-security.js';

function hintFor(reason: string): string {
  if (/WRONGPASS|NOAUTH|invalid password|invalid username/i.test(reason)) {
    return ' (check the user name and password in REDIS_URL)';
  }
  if (/NOPERM/.test(reason)) {
    return ' (the Redis ACL user may not use a command or the keys under BROKER_REDIS_PREFIX: see README, Security)';
  }
  if (/certificate|self[- ]signed|CERT_|altnames|SSL|TLS/i.test(reason)) {
    return ' (set REDIS_TLS_CA_FILE to the CA that signed the Redis server certificate, and use a host name the certificate names)';
  }
  return '';
}

/** Redis refused or could not be reached at start-up; the message names REDIS_URL, never its password. */
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
 * forbidden.
 */
export async function connectOrExplain(redis: Redis, url: string, keys: readonly string[] = []): Promise<void> {
  let lastError: Error | undefined;
  const onError = (err: Error) => {
    lastError = err;
  };
  redis.on('error', onError);
  try {
    await redis.connect();
    await redis.ping();
    for (const key of keys) {
      await redis.exists(key).catch((err: unknown) => {
        if (err instanceof Error && /NOPERM/.test(err.message)) throw err;
      });
    }
  } catch (err) {
    const reason = (err instanceof Error && /NOPERM/.test(err.message) ? err : (lastError ?? (err as Error))).message;
    throw new RedisStartupError(`cannot use Redis at REDIS_URL ${maskRedisUrl(url)}: ${reason}${hintFor(reason)}`);
  } finally {
    redis.off('error', onError);
  }
}

/**
 * The start-up check on its own short-lived connection, before any long-lived client (BullMQ's above all,
 * which retries forever) is created.
 */
export async function checkRedisAtStartup(url: string, options: { redisTls: RedisTlsSettings; redisPrefix: string }): Promise<void> {
  const redis = new Redis({ ...redisOptions(url, 'commands', options.redisTls), lazyConnect: true, retryStrategy: () => null });
  try {
    await connectOrExplain(redis, url, probeKeys(options.redisPrefix));
  } finally {
    redis.disconnect();
  }
}
