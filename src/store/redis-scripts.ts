import type { Redis, Cluster, Result } from 'ioredis';
import { CLAIM_DUE_LUA, POP_FRESH_LUA, RELEASE_LOCK_LUA, TAKE_FLEET_SLOT_LUA, TAKE_SLOT_LUA, TRIM_STALE_LUA, WRITE_TOKEN_LUA } from './scripts.js';

export type RedisClient = Redis | Cluster;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    ptbWriteToken(
      tokenKey: string,
      statusKey: string,
      version: number,
      token: string,
      expireTime: number,
      fetchedAt: number,
      eventsChannel: string,
      event: string,
    ): Result<number, Context>;
    ptbTakeSlot(
      windowKey: string,
      counterKey: string,
      rejectedKey: string,
      quotaKey: string,
      now: number,
      windowMs: number,
      limit: number,
      obeyRejected: number,
      quotaLimit: number,
      quotaWindowMs: number,
    ): Result<Array<number | string>, Context>;
    ptbTakeFleetSlot(
      windowKey: string,
      counterKey: string,
      accountFailureKey: string,
      pauseKey: string,
      now: number,
      windowMs: number,
      limit: number,
      force: number,
      accountRetryMs: number,
      credentials: string,
      probeWindowMs: number,
    ): Result<Array<number | string>, Context>;
    ptbReleaseLock(lockKey: string, owner: string): Result<number, Context>;
    ptbPopFresh(poolKey: string, minMintedAt: number): Result<string | null, Context>;
    ptbTrimStale(poolKey: string, minMintedAt: number): Result<number, Context>;
    ptbClaimDue(scheduleKey: string, now: number, leaseMs: number, limit: number): Result<string[], Context>;
  }
}

const defined = new WeakSet<object>();

/** Registers the broker's Lua scripts on a client (EVALSHA with automatic fallback to EVAL). Idempotent. */
export function defineScripts(redis: RedisClient): RedisClient {
  if (defined.has(redis)) return redis;
  redis.defineCommand('ptbWriteToken', { numberOfKeys: 2, lua: WRITE_TOKEN_LUA });
  redis.defineCommand('ptbTakeSlot', { numberOfKeys: 4, lua: TAKE_SLOT_LUA });
  redis.defineCommand('ptbTakeFleetSlot', { numberOfKeys: 4, lua: TAKE_FLEET_SLOT_LUA });
  redis.defineCommand('ptbReleaseLock', { numberOfKeys: 1, lua: RELEASE_LOCK_LUA });
  redis.defineCommand('ptbPopFresh', { numberOfKeys: 1, lua: POP_FRESH_LUA });
  redis.defineCommand('ptbTrimStale', { numberOfKeys: 1, lua: TRIM_STALE_LUA });
  redis.defineCommand('ptbClaimDue', { numberOfKeys: 1, lua: CLAIM_DUE_LUA });
  defined.add(redis);
  return redis;
}
