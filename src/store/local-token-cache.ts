import type { RedisClient } from './redis-scripts.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { TokenEventSubscription } from './token-event-subscription.js';
import type { CachedToken } from './token-store.js';

export interface LocalTokenCacheOptions {
  /** A connection of its own: it enters subscriber mode. The cache connects it in start() and quits it in stop(). */
  subscriber: RedisClient;
  /** The pub/sub channel on which TokenStore announces token changes (`RedisKeys.events()`). */
  channel: string;
  clock: Clock;
  logger: Logger;
  /** An entry is served only while `expireTime - now >= minTtlMs`. */
  minTtlMs: number;
  /** An entry is dropped this long after it was read from Redis, whatever pub/sub said; 0 turns the cache off. */
  maxAgeMs: number;
  /** Most entries held; the oldest is evicted first. 0 turns the cache off. */
  maxEntries: number;
}

interface Entry {
  readonly token: CachedToken;
  /** Clock time at which the token was read from Redis. */
  readonly storedAt: number;
}

const cacheKey = (appId: string, channelId: string): string => `${appId}:${channelId}`;

/**
 * Channel tokens held in process memory in front of TokenStore reads, so a hit costs no Redis round trip.
 *
 * Correct across replicas: TokenStore publishes an event after each effective write and each forget, and
 * every replica drops its copy on receipt (its own writes also drop it synchronously, through
 * `TokenStore.onTokenChange`). The cache serves nothing while its subscription is down and empties itself
 * whenever the subscription is (re)established, so a message lost in a disconnection cannot leave a replaced
 * token behind. Entries also expire after `maxAgeMs`, which bounds how long any missed message could matter,
 * and an entry is never served once less than `minTtlMs` of its life is left.
 *
 * A read that raced with an invalidation is not stored: `fill` takes the generation seen before the Redis
 * read and refuses if any invalidation happened since.
 */
export class LocalTokenCache {
  private readonly o: LocalTokenCacheOptions;
  private readonly entries = new Map<string, Entry>();
  /** The token change announcements; while it is down, the cache serves nothing. */
  private readonly events: TokenEventSubscription;
  private generation = 0;

  constructor(options: LocalTokenCacheOptions) {
    this.o = options;
    this.events = new TokenEventSubscription({ subscriber: options.subscriber, channel: options.channel, logger: options.logger });
  }

  /** Whether the cache is serving (subscribed, and not turned off by configuration). */
  get active(): boolean {
    return this.events.subscribed && this.o.maxAgeMs > 0 && this.o.maxEntries > 0;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Connects the subscriber and resolves once the first subscription attempt has finished. Every
   * (re)subscription empties the cache: what was announced while it was down is lost.
   */
  async start(): Promise<void> {
    await this.events.start({
      onEvent: (event) => this.invalidate(event.appId, event.channelId),
      onResync: () => this.clear(),
      onDown: () => this.clear(),
    });
  }

  async stop(): Promise<void> {
    this.clear();
    await this.events.stop();
  }

  /** Call before reading Redis, and hand the result to `fill`. */
  mark(): number {
    return this.generation;
  }

  /** The channel's token if it is held, younger than the max age, and servable; otherwise undefined. */
  get(appId: string, channelId: string): CachedToken | undefined {
    if (!this.events.subscribed) return undefined;
    const key = cacheKey(appId, channelId);
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    const now = this.o.clock.now();
    if (now - entry.storedAt >= this.o.maxAgeMs || now < entry.storedAt || entry.token.expireTime - now < this.o.minTtlMs) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.token;
  }

  /** Stores a token just read from Redis, unless the cache is off or anything was invalidated since `mark`. */
  fill(appId: string, channelId: string, token: CachedToken, mark: number): void {
    if (!this.active || mark !== this.generation) return;
    const now = this.o.clock.now();
    if (token.expireTime - now < this.o.minTtlMs) return;
    const key = cacheKey(appId, channelId);
    this.entries.delete(key);
    while (this.entries.size >= this.o.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
    this.entries.set(key, { token, storedAt: now });
  }

  /** Drops the channel's entry (a token changed here or on another replica). */
  invalidate(appId: string, channelId: string): void {
    this.generation += 1;
    this.entries.delete(cacheKey(appId, channelId));
  }

  /** Drops every entry. */
  clear(): void {
    this.generation += 1;
    this.entries.clear();
  }
}
