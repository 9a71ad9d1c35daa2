import type { Logger } from '../lib/logger.js';
import type { RedisClient } from './redis-scripts.js';
import { parseTokenEvent, type TokenEvent } from './token-events.js';

export interface TokenEventSubscriptionOptions {
  /** A connection of its own: it enters subscriber mode. Connected in start(), quit in stop(). */
  subscriber: RedisClient;
  /** The pub/sub channel on which TokenStore announces token changes (`RedisKeys.events()`). */
  channel: string;
  logger: Logger;
}

export interface TokenEventHandlers {
  /** A channel's token was written or forgotten (on any replica). */
  onEvent(event: TokenEvent): void;
  /**
   * The subscription was (re)established, or a message this version cannot read arrived: events may have
   * been missed, so whatever depends on them should read the current state again.
   */
  onResync(): void;
  /** The subscription was lost (connection closed, or a Cluster node change): nothing arrives until onResync. */
  onDown?(): void;
}

/**
 * Follows the token change announcements on the `RedisKeys.events()` pub/sub channel, for the token streams
 * and the in-process token cache.
 *
 * Messages published while the subscription is down are lost, so every (re)subscription is reported as
 * `onResync`: the listener reads again what it follows. On a Redis Cluster the subscription lives on one
 * node, and ioredis moves it by itself when that node fails or the topology changes: those count as a
 * resubscription too (the same rule as LocalTokenCache's).
 */
export class TokenEventSubscription {
  private readonly o: TokenEventSubscriptionOptions;
  private handlers: TokenEventHandlers | undefined;
  private stopped = false;
  private subscribedNow = false;
  private lastErrorLoggedAt = 0;

  constructor(options: TokenEventSubscriptionOptions) {
    this.o = options;
  }

  /** Whether messages are arriving now (subscribed, and not stopped). */
  get subscribed(): boolean {
    return this.subscribedNow;
  }

  /** Connects and resolves once the first subscription attempt has finished (it may have failed: then it retries on reconnect). */
  async start(handlers: TokenEventHandlers): Promise<void> {
    this.handlers = handlers;
    const { subscriber, logger } = this.o;
    subscriber.on('message', (channel: string, message: string) => this.onMessage(channel, message));
    subscriber.on('close', () => this.down());
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
    for (const event of ['node error', '-node', '+node']) {
      subscriber.on(event, () => {
        if (this.stopped) return;
        this.down();
        void this.subscribe();
      });
    }
    await subscriber.connect();
    await first;
  }

  /** Unsubscribes and quits (gracefully: this may wait for Redis; see `drop`). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.subscribedNow = false;
    const { subscriber } = this.o;
    if (subscriber.status === 'wait' || subscriber.status === 'end') {
      subscriber.disconnect();
      return;
    }
    await subscriber.quit().catch(() => subscriber.disconnect());
  }

  /** Drops the connection at once (when `stop` does not end: Redis unreachable). */
  drop(): void {
    this.stopped = true;
    this.subscribedNow = false;
    this.o.subscriber.disconnect();
  }

  private down(): void {
    this.subscribedNow = false;
    this.handlers?.onDown?.();
  }

  private async subscribe(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.o.subscriber.subscribe(this.o.channel);
      if (this.stopped) return;
      this.subscribedNow = true;
      this.handlers?.onResync();
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, 'could not subscribe to token events: what follows them waits for the next reconnection');
    }
  }

  private onMessage(channel: string, message: string): void {
    if (channel !== this.o.channel || this.handlers === undefined) return;
    const event = parseTokenEvent(message);
    // From a newer version, perhaps: reading everything again is always safe.
    if (event === undefined) this.handlers.onResync();
    else this.handlers.onEvent(event);
  }
}
