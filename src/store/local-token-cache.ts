import type { RedisClient } from './redis-scripts.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { parseTokenEvent } from './token-events.js';
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
  private generation = 0;
  private subscribed = false;
  private stopped = false;
  private lastErrorLoggedAt = 0;

  constructor(options: LocalTokenCacheOptions) {
    this.o = options;
  }

  /** Whether the cache is serving (subscribed, and not turned off by configuration). */
  get active(): boolean {
    return this.subscribed && this.o.maxAgeMs > 0 && this.o.maxEntries > 0;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Connects the subscriber and resolves once the first subscription attempt has finished. */
  async start(): Promise<void> {
    const { subscriber, logger } = this.o;
    subscriber.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    subscriber.on('close', () => this.unsubscribed());
    subscriber.on('error', (err: Error) => {
      const now = Date.now();
      if (now - this.lastErrorLoggedAt > 5000) {
        this.lastErrorLoggedAt = now;
        logger.warn({ err: err.message }, 'token event subscription: redis connection error');
      }
    });
    let first: Promise<void> | undefined;
    subscriber.on('ready', () => {
      const attempt = this.subscribe();
      first ??= attempt;
    });
    // On a Redis Cluster the subscription lives on one node, and ioredis moves it to another node by itself
    // when that one fails or leaves, without a 'close': messages published meanwhile are lost. So any node
    // failure or topology change counts as a resubscription: serve nothing, drop everything, subscribe again.
    for (const event of ['node error', '-node', '+node']) {
      subscriber.on(event, () => {
        if (this.stopped) return;
        this.unsubscribed();
        void this.subscribe();
      });
    }
    await subscriber.connect();
    // 'ready' has fired by the time connect() resolves.
    await first;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribed();
    await this.o.subscriber.quit().catch(() => this.o.subscriber.disconnect());
  }

  /** Call before reading Redis, and hand the result to `fill`. */
  mark(): number {
    return this.generation;
  }

  /** The channel's token if it is held, younger than the max age, and servable; otherwise undefined. */
  get(appId: string, channelId: string): CachedToken | undefined {
    if (!this.subscribed) return undefined;
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

  private async subscribe(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.o.subscriber.subscribe(this.o.channel);
      this.clear();
      this.subscribed = !this.stopped;
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, 'could not subscribe to token events: serving from Redis only');
    }
  }

  private unsubscribed(): void {
    this.subscribed = false;
    this.clear();
  }

  private onMessage(channel: string, message: string): void {
    if (channel !== this.o.channel) return;
    const event = parseTokenEvent(message);
    if (event === undefined) {
      // From a newer version, perhaps: dropping everything is always safe.
      this.clear();
      return;
    }
    this.invalidate(event.appId, event.channelId);
  }
}
