import { z } from 'zod';
import type { FailureRecord } from '../errors/broker-error.js';
import { lockAndReadRaw, type FlightStore, type LockedRead } from './flight-store.js';
import type { RedisKeys } from './redis-keys.js';
import { defineScripts, type RedisClient } from './redis-scripts.js';
import { guardRedis } from './redis-unavailable.js';
import type { SealedJson } from './sealed-json.js';

/** A viewer's watch-API token as cached. */
const viewerTokenSchema = z.object({ token: z.string(), expireTime: z.number() });
export type CachedViewerToken = z.infer<typeof viewerTokenSchema>;

/** The deprecated common token as cached; `expireTime` is the broker's own (fetchedAt + the configured TTL). */
const commonTokenSchema = z.object({ token: z.string(), mediaChannelKey: z.string(), fetchedAt: z.number(), expireTime: z.number() });
export type CachedCommonToken = z.infer<typeof commonTokenSchema>;

/** A pre-minted single-use watch-page URL. */
const pooledUrlSchema = z.object({ url: z.string(), mintedAt: z.number(), expireTime: z.number() });
export type PooledUrl = z.infer<typeof pooledUrlSchema>;

/** A cached value of a newer kind, as the refresh core sees it, plus its write. */
export interface ValueFlightStore<T> extends FlightStore<T> {
  /** Stores the value for `ttlMs` (nothing when the TTL is not positive). */
  write(value: T, ttlMs: number): Promise<void>;
}

/** How long a failure stays readable for the replicas that waited on the fetch. */
const FAILURE_TTL_MS = 5000;

/**
 * Redis state of the newer token kinds: viewer tokens and the common token (sealed JSON strings, one per
 * value, with their single-flight lock and failure record beside them) and the per-channel pool of
 * single-use watch URLs. Values are validated with a schema on the way out: an unreadable one is absent.
 */
export class KindTokenStore {
  private readonly redis: RedisClient;
  private readonly keys: RedisKeys;
  private readonly sealed: SealedJson;

  constructor(options: { redis: RedisClient; keys: RedisKeys; sealed: SealedJson }) {
    this.redis = defineScripts(options.redis);
    this.keys = options.keys;
    this.sealed = options.sealed;
  }

  viewerToken(appId: string, channelId: string, profileDigest: string): ValueFlightStore<CachedViewerToken> {
    return this.value(appId, channelId, this.keys.watchToken(appId, channelId, profileDigest), viewerTokenSchema);
  }

  commonToken(appId: string, channelId: string): ValueFlightStore<CachedCommonToken> {
    return this.value(appId, channelId, this.keys.commonToken(appId, channelId), commonTokenSchema);
  }

  /** Hands out the oldest pooled URL minted at or after `freshSince` (atomic: each URL goes to one caller). */
  async popFreshUrl(appId: string, channelId: string, freshSince: number): Promise<PooledUrl | null> {
    const key = this.keys.watchUrlPool(appId, channelId);
    const raw = await guardRedis(this.redis.ptbPopFresh(key, freshSince));
    if (raw === null) return null;
    // Entries are `<mintedAt>:<sealed JSON>`: the prefix lets the Lua scripts judge age without the secret.
    const at = raw.indexOf(':');
    return at < 0 ? null : this.open(raw.slice(at + 1), key, pooledUrlSchema);
  }

  /** Drops URLs minted before `freshSince` and returns how many are left. */
  async trimStaleUrls(appId: string, channelId: string, freshSince: number): Promise<number> {
    return guardRedis(this.redis.ptbTrimStale(this.keys.watchUrlPool(appId, channelId), freshSince));
  }

  /** Appends a URL to the pool and returns the pool's size. */
  async pushUrl(appId: string, channelId: string, url: PooledUrl): Promise<number> {
    const key = this.keys.watchUrlPool(appId, channelId);
    return guardRedis(this.redis.rpush(key, `${url.mintedAt}:${this.sealed.seal(url, key)}`));
  }

  async urlPoolSize(appId: string, channelId: string): Promise<number> {
    return guardRedis(this.redis.llen(this.keys.watchUrlPool(appId, channelId)));
  }

  async expireUrlPool(appId: string, channelId: string, ttlMs: number): Promise<void> {
    await guardRedis(this.redis.pexpire(this.keys.watchUrlPool(appId, channelId), ttlMs));
  }

  private value<T>(appId: string, channelId: string, key: string, schema: z.ZodType<T>): ValueFlightStore<T> {
    const lockKey = this.keys.lockFor(key);
    const failureKey = this.keys.failureFor(key);
    const rejectedKey = this.keys.rejected(appId, channelId);
    const read = async () => this.open(await guardRedis(this.redis.get(key)), key, schema);
    return {
      lockKey,
      channelId,
      read,
      lockAndRead: async (ttlMs): Promise<LockedRead<T>> => {
        const { rejected, owner, value } = await lockAndReadRaw(this.redis.pipeline(), { rejected: rejectedKey, lock: lockKey }, ttlMs, (p) => p.get(key));
        return { rejected, owner, current: this.open(typeof value === 'string' ? value : null, key, schema) };
      },
      isLocked: async () => (await guardRedis(this.redis.exists(lockKey))) === 1,
      releaseLock: async (owner) => {
        await guardRedis(this.redis.ptbReleaseLock(lockKey, owner));
      },
      recordFailure: async (failure) => {
        await guardRedis(this.redis.set(failureKey, JSON.stringify(failure), 'PX', FAILURE_TTL_MS));
      },
      readFailure: async () => parseFailure(await guardRedis(this.redis.get(failureKey))),
      write: async (value, ttlMs) => {
        if (ttlMs > 0) await guardRedis(this.redis.set(key, this.sealed.seal(value, key), 'PX', Math.ceil(ttlMs)));
      },
    };
  }

  private open<T>(stored: string | null, key: string, schema: z.ZodType<T>): T | null {
    const parsed = schema.safeParse(this.sealed.open(stored, key));
    return parsed.success ? parsed.data : null;
  }
}

const failureSchema = z.object({ code: z.string(), message: z.string(), at: z.number(), retryAfterMs: z.number().optional() });

function parseFailure(raw: string | null): FailureRecord | null {
  if (raw === null) return null;
  try {
    const parsed = failureSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
