import { BrokerError, BudgetExhaustedError, UpstreamError, type ErrorCode, ERROR_STATUS } from '../errors/broker-error.js';
import type { PolyvAccount } from '../config/config.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { PolyvClient } from '../polyv/polyv-client.js';
import type { CallBudget } from '../store/call-budget.js';
import type { CachedToken, ChannelStatus, TokenStore } from '../store/token-store.js';
import type { LocalTokenCache } from './local-token-cache.js';
import { isRedisUnavailableError } from '../store/redis-connection.js';
import { LastServedTokens } from './last-served-tokens.js';
import { isRefreshDue, isServable, refreshDueAt, type TimingPolicy } from './refresh-timing.js';

/** Schedules the proactive refresh of a warm channel; implemented on BullMQ by the scheduler layer. */
export interface RefreshScheduler {
  /**
   * Makes the channel's one refresh job due at `dueAt`. With `firstToken` (the channel had no token), a job
   * that already exists is left as it is: it was due earlier, and runs, finds nothing due and moves itself.
   */
  schedule(appId: string, channelId: string, dueAt: number, options?: { firstToken?: boolean }): Promise<void>;
  cancel(appId: string, channelId: string): Promise<void>;
}

export type RefreshTrigger = 'miss' | 'rejected' | 'scheduled' | 'manual';

export interface ServedToken {
  readonly channelId: string;
  readonly channelToken: string;
  readonly expireTime: number;
  readonly outcome: 'hit' | 'miss' | 'refresh';
}

export interface ChannelState {
  readonly channelId: string;
  readonly warm: boolean;
  readonly expireTime: number | null;
  readonly remainingSeconds: number | null;
  readonly lastRefreshAt: number | null;
  readonly nextRefreshAt: number | null;
  readonly callsLastHour: number;
  readonly budgetPerHour: number;
  readonly lastError: NonNullable<ChannelStatus['lastError']> | null;
}

export interface ChannelTokenServiceOptions {
  store: TokenStore;
  budget: CallBudget;
  polyv: PolyvClient;
  scheduler: RefreshScheduler;
  clock: Clock;
  logger: Logger;
  metrics: BrokerMetrics;
  expireSeconds: number;
  refreshBeforeSeconds: number;
  minTtlSeconds: number;
  rejectedChannelTtlSeconds: number;
  /** Get-channel-token calls per channel and rolling hour, unless the account sets `budgets.channelTokenPerHour`. */
  channelBudgetPerHour: number;
  /** How long a refresh may hold the channel lock (longer than one PolyV call plus one re-signed retry). */
  lockTtlMs: number;
  /** How often a replica waiting for another's refresh looks again. */
  waitPollMs?: number;
  /** In-process cache in front of token reads for serving (absent: every read goes to Redis). */
  localCache?: LocalTokenCache;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Channel tokens: serve from Redis, fetch on a miss single-flight across replicas, refresh on schedule or
 * when a consumer reports a rejected token. Every PolyV call takes a budget slot first, and every write is
 * versioned so a late writer cannot replace a newer token.
 */
export class ChannelTokenService {
  private readonly o: ChannelTokenServiceOptions;
  private readonly policy: TimingPolicy;
  private readonly inFlight = new Map<string, Promise<CachedToken>>();
  /** What this replica answers from while Redis is unreachable (see getToken). */
  private readonly lastServed: LastServedTokens;

  constructor(options: ChannelTokenServiceOptions) {
    this.o = options;
    this.lastServed = new LastServedTokens({ clock: options.clock });
    this.policy = { refreshBeforeMs: options.refreshBeforeSeconds * 1000, minTtlMs: options.minTtlSeconds * 1000 };
  }

  get timing(): TimingPolicy {
    return this.policy;
  }

  /**
   * The current token if it has at least the minimum TTL left; otherwise fetches one (single-flight).
   * While Redis is unreachable: the last token this replica served for the channel if it still has the
   * minimum TTL left, else 503 `not_ready` (see LastServedTokens).
   */
  async getToken(account: PolyvAccount, channelId: string): Promise<ServedToken> {
    const local = this.peekToken(account, channelId);
    if (local !== undefined) return local;
    if (this.lastServed.redisFailing) return this.fromMemory(account, channelId, undefined);
    try {
      const mark = this.o.localCache?.mark() ?? 0;
      const cached = await this.o.store.read(account.appId, channelId);
      this.lastServed.redisAnswered();
      if (cached !== null && isServable(cached.expireTime, this.o.clock.now(), this.policy)) {
        this.o.localCache?.fill(account.appId, channelId, cached, mark);
        this.lastServed.remember(account.appId, channelId, cached);
        return this.served(channelId, cached, 'hit');
      }
      const fresh = await this.refreshWhen(account, channelId, 'miss', (cur) => cur === null || !this.servableNow(cur), cached);
      this.lastServed.remember(account.appId, channelId, fresh);
      return this.served(channelId, fresh, 'miss');
    } catch (err) {
      if (!isRedisUnavailableError(err)) throw err;
      if (this.lastServed.redisFailed()) {
        this.o.logger.warn({ err: (err as Error).message }, 'Redis unreachable: answering token reads from memory');
      }
      return this.fromMemory(account, channelId, err);
    }
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
      retryable: true,
      retryAfterMs: 1000,
      cause,
    });
  }

  /**
   * The token from the in-process cache, synchronously, if it holds a servable one (counted as a hit);
   * otherwise undefined and nothing is counted. The HTTP fast path answers from this alone.
   */
  peekToken(account: PolyvAccount, channelId: string): ServedToken | undefined {
    const cached = this.o.localCache?.get(account.appId, channelId);
    if (cached === undefined || !isServable(cached.expireTime, this.o.clock.now(), this.policy)) return undefined;
    this.lastServed.remember(account.appId, channelId, cached);
    return this.served(channelId, cached, 'hit');
  }

  /**
   * Compare-and-refresh: refreshes only if `rejectedToken` is still the current token, so a storm of
   * reports about one token costs at most one PolyV call.
   */
  async refreshRejected(account: PolyvAccount, channelId: string, rejectedToken: string): Promise<ServedToken> {
    // Comparing needs Redis: while it is unreachable a report of the current token gets 503 at once.
    if (this.lastServed.redisFailing) return this.fromMemory(account, channelId, undefined, rejectedToken);
    let fresh: CachedToken;
    try {
      fresh = await this.refreshWhen(
        account,
        channelId,
        'rejected',
        (cur) => cur === null || cur.token === rejectedToken || !this.servableNow(cur),
      );
    } catch (err) {
      if (!isRedisUnavailableError(err)) throw err;
      this.lastServed.redisFailed();
      return this.fromMemory(account, channelId, err, rejectedToken);
    }
    this.lastServed.remember(account.appId, channelId, fresh);
    return this.served(channelId, fresh, 'refresh');
  }

  /** The worker's refresh: calls PolyV only if the token is missing or inside its refresh window. */
  async refreshIfDue(account: PolyvAccount, channelId: string): Promise<CachedToken> {
    return this.refreshWhen(
      account,
      channelId,
      'scheduled',
      (cur) => cur === null || isRefreshDue(cur.expireTime, this.o.clock.now(), this.policy),
    );
  }

  /**
   * On-call's forced refresh: replaces the current token whatever its age (still through the budget, the
   * lock and a versioned write). Concurrent forced refreshes of one channel share one call.
   */
  async forceRefresh(account: PolyvAccount, channelId: string): Promise<CachedToken> {
    const before = await this.o.store.read(account.appId, channelId);
    return this.refreshWhen(account, channelId, 'manual', (cur) => cur === null || cur.version === before?.version);
  }

  /** Keeps a channel warm: registers it and schedules its refresh (now, if it has no servable token). */
  async warm(account: PolyvAccount, channelId: string): Promise<ChannelState> {
    await this.o.store.addWarm(account.appId, channelId);
    const cached = await this.o.store.read(account.appId, channelId);
    const dueAt = cached !== null && this.servableNow(cached) ? refreshDueAt(cached.expireTime, this.policy) : this.o.clock.now();
    await this.schedule(account.appId, channelId, dueAt);
    return this.describe(account, channelId);
  }

  /** Stops keeping a channel warm and forgets its cached token; returns whether it was warm. */
  async unwarm(account: PolyvAccount, channelId: string): Promise<boolean> {
    const was = await this.o.store.removeWarm(account.appId, channelId);
    await this.o.scheduler.cancel(account.appId, channelId);
    await this.o.store.forget(account.appId, channelId);
    return was;
  }

  async describe(account: PolyvAccount, channelId: string): Promise<ChannelState> {
    const [warm, cached, status, calls] = await Promise.all([
      this.o.store.isWarm(account.appId, channelId),
      this.o.store.read(account.appId, channelId),
      this.o.store.readStatus(account.appId, channelId),
      this.o.budget.used(account.appId, channelId),
    ]);
    const now = this.o.clock.now();
    return {
      channelId,
      warm,
      expireTime: cached?.expireTime ?? null,
      remainingSeconds: cached === null ? null : Math.max(0, Math.floor((cached.expireTime - now) / 1000)),
      lastRefreshAt: status.lastRefreshAt ?? null,
      nextRefreshAt: warm ? (status.nextRefreshAt ?? null) : null,
      callsLastHour: calls,
      budgetPerHour: account.budgets?.channelTokenPerHour ?? this.o.channelBudgetPerHour,
      lastError: status.lastError ?? null,
    };
  }

  async list(account: PolyvAccount): Promise<ChannelState[]> {
    const out: ChannelState[] = [];
    for await (const batch of this.o.store.scanWarm(account.appId)) {
      out.push(...(await Promise.all(batch.map((ch) => this.describe(account, ch)))));
    }
    return out.sort((a, b) => (a.channelId.length - b.channelId.length) || a.channelId.localeCompare(b.channelId));
  }

  /** Schedules the channel's refresh and records when, for on-call. */
  async schedule(appId: string, channelId: string, dueAt: number, options: { firstToken?: boolean } = {}): Promise<void> {
    // Independent writes (BullMQ and the status hash): sent together, one round trip instead of two.
    await Promise.all([this.o.scheduler.schedule(appId, channelId, dueAt, options), this.o.store.setNextRefresh(appId, channelId, dueAt)]);
  }

  private servableNow(token: CachedToken): boolean {
    return isServable(token.expireTime, this.o.clock.now(), this.policy);
  }

  private served(channelId: string, token: CachedToken, outcome: ServedToken['outcome']): ServedToken {
    const remainingMs = token.expireTime - this.o.clock.now();
    this.o.metrics.tokensServed.inc({ kind: 'channel', outcome });
    this.o.metrics.servedRemainingTtl.observe({ kind: 'channel' }, remainingMs / 1000);
    if (remainingMs < this.policy.minTtlMs) this.o.metrics.servedBelowMinTtl.inc({ kind: 'channel' });
    return { channelId, channelToken: token.token, expireTime: token.expireTime, outcome };
  }

  /**
   * Runs a refresh if `needed(current)` holds, at most once at a time per channel across all replicas:
   * in-process callers share one promise; replicas share a Redis lock, and those that lose it wait for the
   * winner's token (or its error) instead of calling PolyV themselves.
   */
  private refreshWhen(
    account: PolyvAccount,
    channelId: string,
    trigger: RefreshTrigger,
    needed: (current: CachedToken | null) => boolean,
    justRead?: CachedToken | null,
  ): Promise<CachedToken> {
    const key = `${account.appId}:${channelId}:${trigger}`;
    const existing = this.inFlight.get(key);
    if (existing !== undefined) return existing;
    const flight = this.refreshAcrossReplicas(account, channelId, trigger, needed, justRead).finally(() => {
      this.inFlight.delete(key);
    });
    this.inFlight.set(key, flight);
    return flight;
  }

  private async refreshAcrossReplicas(
    account: PolyvAccount,
    channelId: string,
    trigger: RefreshTrigger,
    needed: (current: CachedToken | null) => boolean,
    justRead?: CachedToken | null,
  ): Promise<CachedToken> {
    const { store, clock } = this.o;
    const { appId } = account;
    const waitStartedAt = clock.now();
    const deadline = Date.now() + this.o.lockTtlMs + 1000;
    // What the caller read an instant ago stands in for the first read (a cold miss saves a round trip).
    let known = justRead;

    for (;;) {
      const current = known !== undefined ? known : await store.read(appId, channelId);
      known = undefined;
      if (!needed(current) && current !== null) return current;

      // One round trip: the rejected-channel mark, the lock, and the token as it is under the lock.
      const { rejected, owner, current: again } = await store.lockAndRead(appId, channelId, this.o.lockTtlMs);
      if (rejected !== null && trigger !== 'scheduled') {
        if (owner !== null) this.releaseLock(appId, channelId, owner);
        throw new BrokerError('channel_not_in_account', `channel ${channelId} does not belong to this PolyV account (${rejected})`);
      }
      if (owner !== null) {
        try {
          if (!needed(again) && again !== null) return again;
          return await this.fetchAndStore(account, channelId, trigger, again);
        } finally {
          this.releaseLock(appId, channelId, owner);
        }
      }

      // Another replica is refreshing: wait for its result instead of calling PolyV too.
      while ((await store.isLocked(appId, channelId)) && Date.now() < deadline) {
        await sleep(this.o.waitPollMs ?? 20);
      }
      const after = await store.read(appId, channelId);
      if (!needed(after) && after !== null) return after;
      const status = await store.readStatus(appId, channelId);
      if (status.lastError !== undefined && status.lastError.at >= waitStartedAt) {
        throw errorFromStatus(status.lastError);
      }
      if (Date.now() >= deadline) {
        throw new BrokerError('upstream_unavailable', `timed out waiting for the refresh of channel ${channelId}`, {
          retryable: true,
          retryAfterMs: 1000,
        });
      }
    }
  }

  /**
   * Released without waiting: the answer need not wait for it, and the next command for this channel on this
   * connection is sent after it. Other replicas see the new token as soon as it is written.
   */
  private releaseLock(appId: string, channelId: string, owner: string): void {
    this.o.store.releaseLock(appId, channelId, owner).catch((err: unknown) => {
      this.o.logger.warn({ appId, channelId, err: (err as Error).message }, 'releasing the refresh lock failed; it expires by itself');
    });
  }

  /** Budget slot, PolyV call (re-signed once on `invalid timestamp.`), versioned write, next refresh. */
  private async fetchAndStore(
    account: PolyvAccount,
    channelId: string,
    trigger: RefreshTrigger,
    previous: CachedToken | null,
  ): Promise<CachedToken> {
    const { store, clock, logger, metrics } = this.o;
    const { appId } = account;
    try {
      let attempt = 0;
      for (;;) {
        attempt += 1;
        const { slot } = await this.takeBudget(account, channelId);
        try {
          const data = await this.o.polyv.getChannelToken(account, { channelId, expireSeconds: this.o.expireSeconds });
          const now = clock.now();
          const token: CachedToken = { token: data.channelToken, expireTime: data.expireTime, version: slot, fetchedAt: now };
          if (!isServable(token.expireTime, now, this.policy)) {
            throw new UpstreamError(
              'upstream_bad_response',
              `PolyV returned a token for channel ${channelId} that expires too soon (clock skew?)`,
              { retryable: true },
            );
          }
          const written = await store.write(appId, channelId, token);
          const winner = written ? token : ((await store.read(appId, channelId)) ?? token);
          const dueAt = refreshDueAt(winner.expireTime, this.policy);
          await Promise.all([store.addWarm(appId, channelId), this.schedule(appId, channelId, dueAt, { firstToken: previous === null })]);
          metrics.refreshes.inc({ trigger, outcome: 'success' });
          if (previous !== null) metrics.refreshLeadTime.observe({ trigger }, (previous.expireTime - now) / 1000);
          logger.info({ appId, channelId, trigger, expireTime: winner.expireTime, written }, 'channel token refreshed');
          return winner;
        } catch (err) {
          if (err instanceof UpstreamError && err.code === 'upstream_clock_skew' && attempt === 1) {
            logger.warn({ appId, channelId }, 'PolyV said invalid timestamp; re-signing once');
            continue;
          }
          throw err;
        }
      }
    } catch (err) {
      await this.recordFailure(account, channelId, trigger, err);
      throw err;
    }
  }

  private async takeBudget(account: PolyvAccount, channelId: string) {
    try {
      return await this.o.budget.take(account.appId, channelId, account.budgets?.channelTokenPerHour ?? this.o.channelBudgetPerHour);
    } catch (err) {
      if (err instanceof BudgetExhaustedError) this.o.metrics.budgetRefusals.inc({ scope: err.scope });
      throw err;
    }
  }

  private async recordFailure(account: PolyvAccount, channelId: string, trigger: RefreshTrigger, err: unknown): Promise<void> {
    const { store, clock, logger, metrics } = this.o;
    const code: string = err instanceof BrokerError ? err.code : 'internal_error';
    const message = err instanceof BrokerError ? err.message : 'internal error while refreshing';
    metrics.refreshes.inc({ trigger, outcome: code });
    await store.recordError(account.appId, channelId, {
      code,
      message,
      at: clock.now(),
      retryAfterMs: err instanceof BrokerError ? err.retryAfterMs : undefined,
    });
    if (err instanceof BrokerError && err.code === 'channel_not_in_account') {
      await store.markRejected(account.appId, channelId, message, this.o.rejectedChannelTtlSeconds * 1000);
      await store.removeWarm(account.appId, channelId);
      await this.o.scheduler.cancel(account.appId, channelId);
    }
    const level = err instanceof BrokerError && err.code === 'upstream_auth_failed' ? 'error' : 'warn';
    logger[level]({ appId: account.appId, channelId, trigger, errorCode: code }, `channel token refresh failed: ${message}`);
  }
}

function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_STATUS, code);
}

/** Rebuilds the error another replica recorded, so waiters answer as the refresher did. */
function errorFromStatus(e: NonNullable<ChannelStatus['lastError']>): BrokerError {
  const code: ErrorCode = isErrorCode(e.code) ? e.code : 'upstream_unavailable';
  return new BrokerError(code, e.message, { retryable: code !== 'channel_not_in_account', retryAfterMs: e.retryAfterMs ?? 1000 });
}
