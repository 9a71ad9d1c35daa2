import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../lib/logger.js';
import { redisTlsOptions, type RedisTlsSettings } from './redis-security.js';

export type RedisPurpose = 'commands' | 'bullmq';

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
    retryStrategy: (times) => Math.min(times * 200, 2000),
    ...(u.protocol === 'rediss:' ? { tls: redisTlsOptions(u.hostname, tls) } : {}),
  };
  if (purpose === 'bullmq') {
    opts.maxRetriesPerRequest = null;
  } else {
    opts.maxRetriesPerRequest = 1;
    opts.enableOfflineQueue = true;
    opts.connectTimeout = 2000;
    opts.commandTimeout = 2000;
  }
  return opts;
}

/** A connected client with an error listener (an unhandled 'error' event would crash the process). */
export function createRedis(url: string, purpose: RedisPurpose, logger: Logger, tls: RedisTlsSettings = {}): Redis {
  const redis = new Redis({ ...redisOptions(url, purpose, tls), lazyConnect: true });
  let lastLogged = 0;
  redis.on('error', (err: Error) => {
    const now = Date.now();
    if (now - lastLogged > 5000) {
      lastLogged = now;
      logger.warn({ purpose, err: err.message }, 'redis connection error');
    }
  });
  return redis;
}
