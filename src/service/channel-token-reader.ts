import type { PolyvAccount } from '../config/config.js';
import type { Caller } from '../domain/caller.js';
import { BrokerError, RedisUnavailableError } from '../errors/broker-error.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { CachedToken, TokenStore } from '../store/token-store.js';
import type { ChannelRefresher } from './channel-refresher.js';
import { LastServedTokens } from './last-served-tokens.js';
import type { LocalTokenCache } from '../store/local-token-cache.js';
import type { ReadTracker } from './read-tracker.js';
import { recordServed, servedRecorder } from './record-served.js';
import { isServable, type TimingPolicy } from './refresh-timing.js';

export interface ServedToken {
  readonly channelId: string;
  readonly channelToken: string;
  readonly expireTime: number;
  /** `report_too_soon`: a report of a token younger than the minimum report age, answered with it. */
  readonly outcome: 'hit' | 'miss' | 'refresh' | 'report_too_soon';
}

export interface ChannelTokenReaderOptions {
  store: TokenStore;
  refresher: ChannelRefresher;
  clock: Clock;
  logger: Logger;
  metrics: BrokerMetrics;
  timing: TimingPolicy;
  /** In-process cache in front of token reads for serving (absent: every read goes to Redis). */
  localCache?: LocalTokenCache | undefined;
  /** A report of the current token younger than this is answered with it, without a PolyV call. */
  reportMinAgeMs?: number | undefined;
  /** Notes each token served (absent: reads are not tracked). */
  reads?: ReadTracker | undefined;
}

/**
 * Serves channel tokens to consumers: from the in-process cache, else Redis, else a fetch through the
 * refresh core; compare-and-refresh for reported tokens; and, while Redis is unreachable, the last token
 * this replica served (see LastServedTokens).
 */
export class ChannelTokenReader {
  private readonly o: ChannelTokenReaderOptions;
  private readonly lastServed: LastServedTokens;
  /** The hit's metrics with their labels bound once (the hot path). */
  private readonly recordHit: (remainingMs: number, minTtlMs: number) => void;

  constructor(options: ChannelTokenReaderOptions) {
    this.o = options;
    this.lastServed = new LastServedTokens({ clock: options.clock });
    this.recordHit = servedRecorder(options.metrics, 'channel', 'hit');
  }

  /**
   * The current token if it has at least the minimum TTL left; otherwise fetches one (single-flight).
   * While Redis is unreachable: the last token this replica served for the channel if it still has the
   * minimum TTL left, else 503 `not_ready`.
   */
  async getToken(account: PolyvAccount, channelId: string, caller?: Caller): Promise<ServedToken> {
    const local = this.peekToken(account, channelId);
    if (local !== undefined) return local;
    if (this.lastServed.redisFailing) return this.fromMemory(account, channelId, undefined);
    try {
      const mark = this.o.localCache?.mark() ?? 0;
      const cached = await this.o.store.read(account.appId, channelId);
      this.lastServed.redisAnswered();
      if (cached !== null && this.servableNow(cached)) {
        this.o.localCache?.fill(account.appId, channelId, cached, mark);
        this.remember(account.appId, channelId, cached);
        return this.served(channelId, cached, 'hit');
      }
      const fresh = await this.o.refresher.refreshWhen(account, channelId, 'miss', (cur) => cur === null || !this.servableNow(cur), {
        justRead: cached,
        caller,
      });
      this.remember(account.appId, channelId, fresh);
      return this.served(channelId, fresh, 'miss');
    } catch (err) {
      if (!(err instanceof RedisUnavailableError)) throw err;
      if (this.lastServed.redisFailed()) {
        this.o.logger.warn({ err: err.message }, 'Redis unreachable: answering token reads from memory');
      }
      return this.fromMemory(account, channelId, err);
    }
  }

  /**
   * The token from the in-process cache, synchronously, if it holds a servable one (counted as a hit);
   * otherwise undefined and nothing is counted. The HTTP fast path answers from this alone.
   */
  peekToken(account: PolyvAccount, channelId: string): ServedToken | undefined {
    const cached = this.o.localCache?.get(account.appId, channelId);
    if (cached === undefined || !this.servableNow(cached)) return undefined;
    this.remember(account.appId, channelId, cached);
    return this.served(channelId, cached, 'hit');
  }

  /**
   * Compare-and-refresh: refreshes only if `rejectedToken` is still the current token, so a storm of
   * reports about one token costs at most one PolyV call; and only once the current token is at least the
   * minimum report age old (younger: answered with it, `report_too_soon`), so a consumer that reports every
   * token it gets cannot turn each read into a PolyV call.
   */
  async refreshRejected(account: PolyvAccount, channelId: string, rejectedToken: string, caller?: Caller): Promise<ServedToken> {
    // Comparing needs Redis: while it is unreachable a report of the current token gets 503 at once.
    if (this.lastServed.redisFailing) return this.fromMemory(account, channelId, undefined, rejectedToken);
    let fresh: CachedToken;
    try {
      const current = await this.o.store.read(account.appId, channelId);
      if (current !== null && current.token === rejectedToken && this.servableNow(current) && this.tooYoungToReport(current)) {
        return this.served(channelId, current, 'report_too_soon');
      }
      fresh = await this.o.refresher.refreshWhen(
        account,
        channelId,
        'rejected',
        (cur) => cur === null || cur.token === rejectedToken || !this.servableNow(cur),
        { purpose: rejectedToken, justRead: current, caller },
      );
    } catch (err) {
      if (!(err instanceof RedisUnavailableError)) throw err;
      this.lastServed.redisFailed();
      return this.fromMemory(account, channelId, err, rejectedToken);
    }
    this.remember(account.appId, channelId, fresh);
    return this.served(channelId, fresh, 'refresh');
  }

  /**
   * Answers from memory while Redis is unreachable (never with the token a consumer just reported as
   * rejected), and tries Redis again in the background now and then.
   */
  private fromMemory(account: PolyvAccount, channelId: string, cause: unknown, rejectedToken?: string): ServedToken {
    if (this.lastServed.probeDue()) {
      this.o.store.read(account.appId, channelId).then(
        () => this.lastServed.probed(true),
        () => this.lastServed.probed(false),
      );
    }
    const last = this.lastServed.get(account.appId, channelId);
    if (last !== undefined && last.token !== rejectedToken && this.servableNow(last)) return this.served(channelId, last, 'hit');
    throw new BrokerError('not_ready', `Redis is unreachable and this replica holds no valid token for channel ${channelId}`, {
      retryAfterMs: 1000,
      cause,
    });
  }

  private tooYoungToReport(token: CachedToken): boolean {
    return this.o.clock.now() - token.fetchedAt < (this.o.reportMinAgeMs ?? 0);
  }

  private servableNow(token: CachedToken): boolean {
    return isServable(token.expireTime, this.o.clock.now(), this.o.timing);
  }

  /** A token served: kept for Redis outages, and the read noted (it keeps an on-demand channel warm). */
  private remember(appId: string, channelId: string, token: CachedToken): void {
    this.lastServed.remember(appId, channelId, token);
    this.o.reads?.note(appId, channelId);
  }

  private served(channelId: string, token: CachedToken, outcome: ServedToken['outcome']): ServedToken {
    const remainingMs = token.expireTime - this.o.clock.now();
    if (outcome === 'hit') this.recordHit(remainingMs, this.o.timing.minTtlMs);
    else recordServed(this.o.metrics, 'channel', outcome, remainingMs, this.o.timing.minTtlMs);
    return { channelId, channelToken: token.token, expireTime: token.expireTime, outcome };
  }
}
