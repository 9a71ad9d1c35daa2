import type { FailureRecord } from '../errors/broker-error.js';
import type { Logger } from '../lib/logger.js';
import { lockAndReadRaw, type FlightStore } from './flight-store.js';
import { guardRedis } from './redis-unavailable.js';
import { batchCommands } from './batch-commands.js';
import type { RedisKeys } from './redis-keys.js';
import { defineScripts, type RedisClient } from './redis-scripts.js';
import { TokenCipher } from './token-cipher.js';
import { formatTokenEvent } from './token-events.js';

/** A channel token as cached in Redis. */
export interface CachedToken {
  readonly token: string;
  /** Epoch ms after which PolyV rejects the token (as PolyV gave it). */
  readonly expireTime: number;
  /** Monotonic per channel: the budget slot number of the call that fetched it. */
  readonly version: number;
  /** Epoch ms when the broker received it. */
  readonly fetchedAt: number;
}

/** What the broker remembers about a channel beyond its token (on-call reads it with HGETALL). */
export interface ChannelStatus {
  readonly lastRefreshAt: number | undefined;
  /** Epoch ms of the last read any replica recorded (to within its flush interval). */
  readonly lastReadAt: number | undefined;
  /** The last refresh failure of the channel (the refresh core's failure record). */
  readonly lastError: FailureRecord | undefined;
}

function num(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

/** Redis-backed state of channel tokens: the cached token, its status (reads included) and the refresh lock. */
export class TokenStore {
  private readonly redis: RedisClient;
  private readonly keys: RedisKeys;
  /** Encrypts tokens at rest when a key is configured (see token-cipher.ts); plain text otherwise. */
  private readonly cipher: TokenCipher;
  private readonly logger: Logger | undefined;
  private readonly unreadableLoggedAt = new Map<string, number>();
  private readonly tokenChangeListeners: Array<(appId: string, channelId: string) => void> = [];

  constructor(options: { redis: RedisClient; keys: RedisKeys; cipher?: TokenCipher; logger?: Logger }) {
    this.redis = defineScripts(options.redis);
    this.keys = options.keys;
    this.cipher = options.cipher ?? new TokenCipher();
    this.logger = options.logger;
  }

  /** The channel token as the refresh core sees it; its failure record is the status hash's lastError. */
  flight(appId: string, channelId: string): FlightStore<CachedToken> {
    return {
      lockKey: this.keys.lock(appId, channelId),
      channelId,
      read: () => this.read(appId, channelId),
      lockAndRead: (ttlMs) => this.lockAndRead(appId, channelId, ttlMs),
      isLocked: () => this.isLocked(appId, channelId),
      releaseLock: (owner) => this.releaseLock(appId, channelId, owner),
      recordFailure: (failure) => this.recordError(appId, channelId, failure),
      readFailure: async () => (await this.readStatus(appId, channelId)).lastError ?? null,
    };
  }

  async read(appId: string, channelId: string): Promise<CachedToken | null> {
    const tokenKey = this.keys.token(appId, channelId);
    return this.parseToken(tokenKey, await guardRedis(this.redis.hgetall(tokenKey)), appId, channelId);
  }

  /**
   * The first step of a refresh in one round trip (the channel's keys share a hash slot): whether PolyV
   * rejected the channel lately, the single-flight lock (taken if free; `owner` is null when someone holds
   * it), and the token as it is once the lock is held.
   */
  async lockAndRead(
    appId: string,
    channelId: string,
    ttlMs: number,
  ): Promise<{ rejected: string | null; owner: string | null; current: CachedToken | null }> {
    const tokenKey = this.keys.token(appId, channelId);
    const keys = { rejected: this.keys.rejected(appId, channelId), lock: this.keys.lock(appId, channelId) };
    const { rejected, owner, value } = await lockAndReadRaw(this.redis.pipeline(), keys, ttlMs, (p) => p.hgetall(tokenKey));
    return { rejected, owner, current: this.parseToken(tokenKey, (value ?? {}) as Record<string, string>, appId, channelId) };
  }

  private parseToken(tokenKey: string, h: Record<string, string>, appId: string, channelId: string): CachedToken | null {
    const expireTime = num(h['expireTime']);
    const version = num(h['version']);
    const token = this.openToken(tokenKey, h['token'], appId, channelId);
    if (token === undefined || token === '' || expireTime === undefined || version === undefined) return null;
    return { token, expireTime, version, fetchedAt: num(h['fetchedAt']) ?? 0 };
  }

  /** The expireTime of many channels' tokens in one round trip (null where none is cached). */
  async readExpiries(appId: string, channelIds: readonly string[]): Promise<Array<number | null>> {
    const replies = await guardRedis(
      batchCommands(
        this.redis,
        channelIds.map((ch) => ['hget', this.keys.token(appId, ch), 'expireTime'] as const),
      ),
    );
    return replies.map((value) => (typeof value === 'string' ? (num(value) ?? null) : null));
  }

  /** Writes the token unless a newer version is stored; returns whether it was written. */
  async write(appId: string, channelId: string, token: CachedToken): Promise<boolean> {
    const written = await guardRedis(this.redis.ptbWriteToken(
      this.keys.token(appId, channelId),
      this.keys.status(appId, channelId),
      token.version,
      this.cipher.seal(token.token, this.keys.token(appId, channelId)),
      token.expireTime,
      token.fetchedAt,
      this.keys.events(),
      formatTokenEvent(appId, channelId),
    ));
    if (written !== 1) return false;
    // The script has published the change to every replica; tell this process's listeners too.
    this.notifyTokenChange(appId, channelId);
    return true;
  }

  /** Decrypts a stored token; one that cannot be decrypted counts as absent (fetched again) and is logged without its content. */
  private openToken(tokenKey: string, stored: string | undefined, appId: string, channelId: string): string | undefined {
    if (stored === undefined || stored === '') return undefined;
    const opened = this.cipher.open(stored, tokenKey);
    if (opened.ok) return opened.plaintext;
    const now = Date.now();
    if (now - (this.unreadableLoggedAt.get(tokenKey) ?? 0) >= 60_000) {
      if (this.unreadableLoggedAt.size >= 10_000) this.unreadableLoggedAt.clear();
      this.unreadableLoggedAt.set(tokenKey, now);
      this.logger?.warn(
        { appId, channelId, keyId: opened.keyId, reason: opened.reason },
        opened.reason === 'unknown_key'
          ? 'cached token is encrypted with a key that is not configured (BROKER_ENCRYPTION_KEY / BROKER_ENCRYPTION_OLD_KEYS); treating it as absent'
          : 'cached token does not decrypt (wrong key, altered, or copied from another key); treating it as absent',
      );
    }
    return undefined;
  }

  async readStatus(appId: string, channelId: string): Promise<ChannelStatus> {
    const h = await guardRedis(this.redis.hgetall(this.keys.status(appId, channelId)));
    const at = num(h['lastErrorAt']);
    return {
      lastRefreshAt: num(h['lastRefreshAt']),
      lastReadAt: num(h['lastReadAt']),
      lastError:
        h['lastErrorCode'] !== undefined && at !== undefined
          ? {
              code: h['lastErrorCode'],
              message: h['lastErrorMessage'] ?? '',
              at,
              retryAfterMs: num(h['lastErrorRetryAfterMs']),
            }
          : undefined,
    };
  }

  async recordError(appId: string, channelId: string, error: FailureRecord): Promise<void> {
    const fields: Record<string, string | number> = {
      lastErrorCode: error.code,
      lastErrorMessage: error.message,
      lastErrorAt: error.at,
    };
    if (error.retryAfterMs !== undefined) fields['lastErrorRetryAfterMs'] = error.retryAfterMs;
    await guardRedis(this.redis.hset(this.keys.status(appId, channelId), fields));
  }

  /** Counts one more failed scheduled refresh in a row (reset by the next token written); returns the count. */
  async countRefreshFailure(appId: string, channelId: string): Promise<number> {
    return guardRedis(this.redis.hincrby(this.keys.status(appId, channelId), 'refreshFailures', 1));
  }

  async isLocked(appId: string, channelId: string): Promise<boolean> {
    return (await guardRedis(this.redis.exists(this.keys.lock(appId, channelId)))) === 1;
  }

  /** Compare-and-delete: a lock that expired and was taken by someone else is left alone. */
  async releaseLock(appId: string, channelId: string, owner: string): Promise<void> {
    await guardRedis(this.redis.ptbReleaseLock(this.keys.lock(appId, channelId), owner));
  }

  async markRejected(appId: string, channelId: string, message: string, ttlMs: number): Promise<void> {
    await guardRedis(this.redis.set(this.keys.rejected(appId, channelId), message, 'PX', ttlMs));
  }

  async readRejected(appId: string, channelId: string): Promise<string | null> {
    return guardRedis(this.redis.get(this.keys.rejected(appId, channelId)));
  }

  /**
   * Records that channels were read (by any consumer of this replica) at `at`, in one batched write:
   * `lastReadAt` in each status hash, which decides when an on-demand channel idles out.
   */
  async recordReads(entries: ReadonlyArray<{ readonly appId: string; readonly channelId: string }>, at: number): Promise<void> {
    await guardRedis(batchCommands(this.redis, entries.map((e) => ['hset', this.keys.status(e.appId, e.channelId), 'lastReadAt', at] as const)));
  }

  /** Sets `lastReadAt` unless one is recorded (the migration from key schema v1, which had none). */
  async recordReadIfNone(appId: string, channelIds: readonly string[], at: number): Promise<void> {
    await guardRedis(batchCommands(this.redis, channelIds.map((ch) => ['hsetnx', this.keys.status(appId, ch), 'lastReadAt', at] as const)));
  }

  /** Forgets a channel's cached token and status (the budget window is kept: calls made still count). */
  async forget(appId: string, channelId: string): Promise<void> {
    await guardRedis(this.redis.del(this.keys.token(appId, channelId)));
    await guardRedis(this.redis.hdel(this.keys.status(appId, channelId), 'nextRefreshAt', 'lastErrorCode', 'lastErrorMessage', 'lastErrorAt', 'lastErrorRetryAfterMs', 'refreshFailures'));
    await this.announceTokenChange(appId, channelId);
  }

  /** Calls `listener` synchronously whenever this process replaces or forgets a channel's token. */
  onTokenChange(listener: (appId: string, channelId: string) => void): void {
    this.tokenChangeListeners.push(listener);
  }

  private notifyTokenChange(appId: string, channelId: string): void {
    for (const listener of this.tokenChangeListeners) listener(appId, channelId);
  }

  /**
   * Announces a forgotten token: to this process's listeners at once, and to every replica on the `events()`
   * pub/sub channel (their local caches drop the channel); a write announces itself inside its script. A
   * failed publish is logged, not thrown: other replicas' entries expire after their max age anyway.
   */
  private async announceTokenChange(appId: string, channelId: string): Promise<void> {
    this.notifyTokenChange(appId, channelId);
    try {
      await this.redis.publish(this.keys.events(), formatTokenEvent(appId, channelId));
    } catch (err) {
      this.logger?.warn({ appId, channelId, err: (err as Error).message }, 'could not announce a token change on pub/sub');
    }
  }
}
