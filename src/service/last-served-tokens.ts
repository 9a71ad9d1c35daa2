import type { Clock } from '../lib/clock.js';
import type { CachedToken } from '../store/token-store.js';

export interface LastServedTokensOptions {
  clock: Clock;
  /** Most channels remembered; the one whose token changed longest ago is dropped first. */
  maxEntries?: number;
  /** After a failed Redis read, answer from memory this long before letting one request try Redis again. */
  retryRedisEveryMs?: number;
}

const DEFAULT_MAX_ENTRIES = 100_000;
const DEFAULT_RETRY_REDIS_EVERY_MS = 1000;

/**
 * The last channel token this replica served, per channel, so that it can go on answering while Redis is
 * unreachable. That is safe: while Redis is away no replica can take a budget slot or store a new token, so
 * the token last served is still the current one, and it is served only while it has the minimum TTL left.
 *
 * It also remembers that Redis failed: for `retryRedisEveryMs` after a failure, reads are answered from
 * memory at once instead of each waiting out the Redis command timeout, and then one request at a time
 * tries Redis again.
 */
export class LastServedTokens {
  private readonly tokens = new Map<string, CachedToken>();
  private readonly clock: Clock;
  private readonly maxEntries: number;
  private readonly retryEveryMs: number;
  /** Clock time until which Redis is not asked (0: Redis answered last time). */
  private skipRedisUntil = 0;

  constructor(options: LastServedTokensOptions) {
    this.clock = options.clock;
    this.maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.retryEveryMs = options.retryRedisEveryMs ?? DEFAULT_RETRY_REDIS_EVERY_MS;
  }

  remember(appId: string, channelId: string, token: CachedToken): void {
    const key = `${appId}:${channelId}`;
    if (this.tokens.get(key) === token) return;
    this.tokens.delete(key);
    if (this.tokens.size >= this.maxEntries) {
      const oldest = this.tokens.keys().next();
      if (oldest.done !== true) this.tokens.delete(oldest.value);
    }
    this.tokens.set(key, token);
  }

  get(appId: string, channelId: string): CachedToken | undefined {
    return this.tokens.get(`${appId}:${channelId}`);
  }

  /**
   * True while requests should not ask Redis (it failed less than `retryRedisEveryMs` ago). Once that time
   * is up, the first caller gets false and is the one that tries Redis; the others keep getting true.
   */
  skipRedis(): boolean {
    if (this.skipRedisUntil === 0) return false;
    const now = this.clock.now();
    if (now < this.skipRedisUntil) return true;
    this.skipRedisUntil = now + this.retryEveryMs;
    return false;
  }

  /** Records a failed Redis read; returns true when Redis had been answering until now. */
  redisFailed(): boolean {
    const wasAnswering = this.skipRedisUntil === 0;
    this.skipRedisUntil = this.clock.now() + this.retryEveryMs;
    return wasAnswering;
  }

  redisAnswered(): void {
    this.skipRedisUntil = 0;
  }
}
