import type { PolyvAccount } from '../config/config.js';
import type { CallReason, Caller } from '../domain/caller.js';
import type { RefreshTrigger } from '../domain/token-kinds.js';
import { BrokerError, UpstreamError } from '../errors/broker-error.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { PolyvClient } from '../polyv/polyv-client.js';
import type { CachedToken, TokenStore } from '../store/token-store.js';
import type { PolyvGateway } from './polyv-gateway.js';
import { isRefreshDue, isServable, refreshDueAt, type TimingPolicy } from './refresh-timing.js';
import type { SingleFlight } from './single-flight.js';
import type { WarmChannels } from './warm-channels.js';

/** What a refresh trigger is called as the reason of a PolyV call. */
const REASON: Readonly<Record<RefreshTrigger, CallReason>> = { miss: 'miss', rejected: 'report', scheduled: 'scheduled', manual: 'manual' };

export interface ChannelRefresherOptions {
  store: TokenStore;
  flights: SingleFlight;
  gateway: PolyvGateway;
  polyv: PolyvClient;
  warmChannels: WarmChannels;
  clock: Clock;
  logger: Logger;
  metrics: BrokerMetrics;
  timing: TimingPolicy;
  expireSeconds: number;
}

/**
 * Refreshes channel tokens through the refresh core: single-flight across replicas, the gateway's budget
 * slot and PolyV call, a versioned write (a late writer cannot replace a newer token), then the next refresh.
 */
export class ChannelRefresher {
  private readonly o: ChannelRefresherOptions;

  constructor(options: ChannelRefresherOptions) {
    this.o = options;
  }

  /**
   * Runs a refresh if `needed(current)` holds. `purpose` separates callers that must not share a result
   * (a report of one token from a plain read).
   */
  refreshWhen(
    account: PolyvAccount,
    channelId: string,
    trigger: RefreshTrigger,
    needed: (current: CachedToken | null) => boolean,
    options: { justRead?: CachedToken | null | undefined; purpose?: string; caller?: Caller | undefined } = {},
  ): Promise<CachedToken> {
    const { caller } = options;
    return this.o.flights.run({
      store: this.o.store.flight(account.appId, channelId),
      // Each consumer has a flight of its own in this process: its quota is its own.
      purpose: `${trigger}\n${caller?.name ?? '-'}\n${options.purpose ?? ''}`,
      needed,
      justRead: options.justRead,
      // A scheduled refresh of a channel warmed again after a rejection asks PolyV once more.
      obeyRejected: trigger !== 'scheduled',
      fetch: (current) => this.fetchAndStore(account, channelId, trigger, current, caller),
    });
  }

  /** The worker's refresh: calls PolyV only if the token is missing or inside its refresh window. */
  refreshIfDue(account: PolyvAccount, channelId: string): Promise<CachedToken> {
    return this.refreshWhen(account, channelId, 'scheduled', (cur) => cur === null || isRefreshDue(cur.expireTime, this.o.clock.now(), this.o.timing));
  }

  /**
   * On-call's forced refresh: replaces the current token whatever its age (still through the budget, the
   * lock and a versioned write; one try even while the account's credentials are recorded as refused).
   * Concurrent forced refreshes of one channel share one call.
   */
  async forceRefresh(account: PolyvAccount, channelId: string): Promise<CachedToken> {
    const before = await this.o.store.read(account.appId, channelId);
    return this.refreshWhen(account, channelId, 'manual', (cur) => cur === null || cur.version === before?.version);
  }

  /** Budget slot and PolyV call (the gateway), versioned write, next refresh. */
  private async fetchAndStore(
    account: PolyvAccount,
    channelId: string,
    trigger: RefreshTrigger,
    previous: CachedToken | null,
    caller: Caller | undefined,
  ): Promise<CachedToken> {
    const { store, clock, logger, metrics, timing } = this.o;
    const { appId } = account;
    try {
      const token = await this.o.gateway.call<CachedToken>({
        account,
        channelId,
        kind: 'channel',
        reason: REASON[trigger],
        caller,
        obeyRejected: trigger !== 'scheduled',
        force: trigger === 'manual',
        reserved: trigger === 'scheduled' || trigger === 'manual',
        send: async ({ slot }) => {
          const data = await this.o.polyv.getChannelToken(account, { channelId, expireSeconds: this.o.expireSeconds });
          const fetchedAt = clock.now();
          if (!isServable(data.expireTime, fetchedAt, timing)) {
            throw new UpstreamError('upstream_bad_response', `PolyV returned a token for channel ${channelId} that expires too soon (clock skew?)`);
          }
          return { token: data.channelToken, expireTime: data.expireTime, version: slot, fetchedAt };
        },
      });
      const written = await store.write(appId, channelId, token);
      const winner = written ? token : ((await store.read(appId, channelId)) ?? token);
      await this.o.warmChannels.refreshed(appId, channelId, refreshDueAt(winner.expireTime, timing), trigger !== 'scheduled');
      metrics.refreshes.inc({ trigger, outcome: 'success' });
      if (previous !== null) metrics.refreshLeadTime.observe({ trigger }, (previous.expireTime - token.fetchedAt) / 1000);
      logger.info({ appId, channelId, trigger, expireTime: winner.expireTime, written }, 'channel token refreshed');
      return winner;
    } catch (err) {
      const code = err instanceof BrokerError ? err.code : 'internal_error';
      metrics.refreshes.inc({ trigger, outcome: code });
      if (code === 'channel_not_in_account') await this.o.warmChannels.drop(appId, channelId);
      const message = err instanceof BrokerError ? err.message : 'internal error while refreshing';
      const level = err instanceof BrokerError ? err.logLevel : 'error';
      logger[level]({ appId, channelId, trigger, errorCode: code }, `channel token refresh failed: ${message}`);
      throw err;
    }
  }
}
