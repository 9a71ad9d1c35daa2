import type { PolyvAccount } from '../config/config.js';
import type { Caller } from '../domain/caller.js';
import { BrokerError, RedisUnavailableError } from '../errors/broker-error.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { CachedToken, TokenStore } from '../store/token-store.js';
import type { ChannelTokenService } from './channel-token-service.js';
import { isServable, type TimingPolicy } from './refresh-timing.js';

/** A channel token as a stream carries it: the JSON of `GET .../token`, and its version (the event ID). */
export interface FeedToken {
  readonly channelId: string;
  readonly channelToken: string;
  readonly expireTime: number;
  /** The token's version in Redis; undefined when it was served from memory while Redis was unreachable. */
  readonly version: number | undefined;
}

/** What a watcher of a channel hears: a new current token, or that the channel's token was forgotten (`DELETE`). */
export type FeedUpdate =
  | { readonly kind: 'token'; readonly token: FeedToken }
  | { readonly kind: 'forgotten'; readonly channelId: string };

export type FeedListener = (update: FeedUpdate) => void;

export interface ChannelTokenFeedOptions {
  store: Pick<TokenStore, 'read'>;
  /** Serves the first token of a stream when Redis holds none worth serving (a cold channel: one fetch, single-flight). */
  channelTokens: Pick<ChannelTokenService, 'getToken'>;
  clock: Clock;
  timing: TimingPolicy;
  logger: Logger;
}

/** A read after an event failed (Redis slow or away): tried again this often, this many times; a resubscription reads again anyway. */
const READ_RETRY_DELAY_MS = 1000;
const READ_RETRIES = 3;

interface Watched {
  readonly appId: string;
  readonly channelId: string;
  readonly listeners: Set<FeedListener>;
  /** A read of the channel is under way; `again`: another event arrived meanwhile, read once more after it. */
  reading: boolean;
  again: boolean;
  failures: number;
}

const keyOf = (appId: string, channelId: string): string => `${appId}:${channelId}`;

/**
 * The channel tokens this replica's streams follow, kept current from the token change announcements
 * (`TokenEventSubscription`): on each announcement for a watched channel, one Redis read, whatever the number
 * of watchers, and the result goes to every one of them. Reads of one channel never overlap: an announcement
 * that arrives during a read causes one more read after it, so a burst of writes costs at most two reads and
 * watchers hear the versions in increasing order. A token with less than the minimum TTL left is never handed
 * out; an announcement whose read finds no token is a `forgotten`.
 *
 * An announcement carries IDs only (never a token), and a watcher is told the current state, not the
 * announcement: whether it has seen that version already is the watcher's business (the streams compare
 * versions).
 */
export class ChannelTokenFeed {
  private readonly o: ChannelTokenFeedOptions;
  private readonly watched = new Map<string, Watched>();
  private readonly firstReads = new Map<string, Promise<FeedToken>>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private lastErrorLoggedAt = 0;

  constructor(options: ChannelTokenFeedOptions) {
    this.o = options;
  }

  /** Channels watched by at least one listener. */
  get watchedChannels(): number {
    return this.watched.size;
  }

  /** The channels watched now (each counts as read while it is: see ReadTracker). */
  watchedList(): Iterable<{ readonly appId: string; readonly channelId: string }> {
    return this.watched.values();
  }

  /** Calls `listener` with every update of the channel from now on; returns the function that stops it. */
  watch(appId: string, channelId: string, listener: FeedListener): () => void {
    const key = keyOf(appId, channelId);
    let w = this.watched.get(key);
    if (w === undefined) {
      w = { appId, channelId, listeners: new Set(), reading: false, again: false, failures: 0 };
      this.watched.set(key, w);
    }
    w.listeners.add(listener);
    const entry = w;
    return () => {
      entry.listeners.delete(listener);
      if (entry.listeners.size === 0 && this.watched.get(key) === entry) this.watched.delete(key);
    };
  }

  /**
   * The channel's current token for the first event of a stream: what Redis holds if it has at least the
   * minimum TTL left, else a token from `ChannelTokenService.getToken` (a fetch for a cold channel, or the
   * last one served from memory while Redis is unreachable). Concurrent calls for one channel share one read
   * (a fetch is the first caller's, as with concurrent reads). Throws what `getToken` throws
   * (`budget_exhausted`, `channel_not_in_account`, `upstream_quota_exceeded`, ...).
   */
  current(account: PolyvAccount, channelId: string, caller?: Caller): Promise<FeedToken> {
    const key = keyOf(account.appId, channelId);
    let read = this.firstReads.get(key);
    if (read === undefined) {
      read = this.readCurrent(account, channelId, caller).finally(() => this.firstReads.delete(key));
      this.firstReads.set(key, read);
    }
    return read;
  }

  /** A token of the channel was written or forgotten somewhere: tell its watchers what is current now. */
  changed(appId: string, channelId: string): void {
    const w = this.watched.get(keyOf(appId, channelId));
    if (w === undefined) return;
    if (w.reading) {
      w.again = true;
      return;
    }
    void this.readAndPublish(w);
  }

  /** Announcements may have been missed (the subscription was re-established): read every watched channel again. */
  resync(): void {
    for (const w of this.watched.values()) this.changed(w.appId, w.channelId);
  }

  /** Cancels pending retries and forgets every watcher. */
  stop(): void {
    for (const t of this.retryTimers) clearTimeout(t);
    this.retryTimers.clear();
    this.watched.clear();
  }

  private async readCurrent(account: PolyvAccount, channelId: string, caller: Caller | undefined): Promise<FeedToken> {
    const stored = await this.readStored(account.appId, channelId);
    if (stored !== undefined && this.servable(stored)) return this.feedToken(channelId, stored);
    const served = await this.o.channelTokens.getToken(account, channelId, caller);
    // Its version: the token a fetch just wrote, or a newer one written meanwhile (then that one is current).
    const again = await this.readStored(account.appId, channelId);
    if (again !== undefined && this.servable(again) && (again.token === served.channelToken || again.expireTime >= served.expireTime)) {
      return this.feedToken(channelId, again);
    }
    if (!isServable(served.expireTime, this.o.clock.now(), this.o.timing)) {
      // A stream never carries a token below the minimum TTL, whatever answered.
      throw new BrokerError('not_ready', `no token with the minimum TTL left for channel ${channelId} yet`, { retryAfterMs: 1000 });
    }
    return { channelId, channelToken: served.channelToken, expireTime: served.expireTime, version: undefined };
  }

  /** The stored token; undefined when there is none, or Redis could not be asked. */
  private async readStored(appId: string, channelId: string): Promise<CachedToken | undefined> {
    try {
      return (await this.o.store.read(appId, channelId)) ?? undefined;
    } catch (err) {
      if (err instanceof RedisUnavailableError) return undefined;
      throw err;
    }
  }

  private async readAndPublish(w: Watched): Promise<void> {
    w.reading = true;
    try {
      do {
        w.again = false;
        let stored: CachedToken | null;
        try {
          stored = await this.o.store.read(w.appId, w.channelId);
          w.failures = 0;
        } catch (err) {
          this.readFailed(w, err);
          return;
        }
        const update = this.updateOf(w.channelId, stored);
        if (update !== undefined) this.publish(w, update);
      } while (w.again && this.watched.has(keyOf(w.appId, w.channelId)));
    } finally {
      w.reading = false;
    }
  }

  private updateOf(channelId: string, stored: CachedToken | null): FeedUpdate | undefined {
    if (stored === null) return { kind: 'forgotten', channelId };
    // A token too close to its end is not news worth sending (it is never sent at all).
    return this.servable(stored) ? { kind: 'token', token: this.feedToken(channelId, stored) } : undefined;
  }

  private publish(w: Watched, update: FeedUpdate): void {
    for (const listener of w.listeners) {
      try {
        listener(update);
      } catch (err) {
        this.o.logger.error({ err, channelId: w.channelId }, 'a token stream failed to take an update');
      }
    }
  }

  private readFailed(w: Watched, err: unknown): void {
    const now = Date.now();
    if (now - this.lastErrorLoggedAt > 5000) {
      this.lastErrorLoggedAt = now;
      this.o.logger.warn({ channelId: w.channelId, err: (err as Error).message }, 'could not read a changed token for its streams; trying again');
    }
    w.failures += 1;
    if (w.failures > READ_RETRIES) {
      w.failures = 0;
      return;
    }
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      this.changed(w.appId, w.channelId);
    }, READ_RETRY_DELAY_MS);
    timer.unref();
    this.retryTimers.add(timer);
  }

  private servable(token: CachedToken): boolean {
    return isServable(token.expireTime, this.o.clock.now(), this.o.timing);
  }

  private feedToken(channelId: string, t: CachedToken): FeedToken {
    return { channelId, channelToken: t.token, expireTime: t.expireTime, version: t.version };
  }
}
