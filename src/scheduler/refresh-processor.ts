import { BrokerError } from '../errors/broker-error.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { AccountRegistry } from '../service/account-registry.js';
import type { ChannelTokenService } from '../service/channel-token-service.js';
import { backoffMs, refreshDueAt } from '../service/refresh-timing.js';
import type { TokenStore } from '../store/token-store.js';
import type { RefreshJobData } from './refresh-queue.js';

/** First and largest wait between failed refresh attempts. */
export const RETRY_BASE_MS = 1000;
export const RETRY_CAP_MS = 60_000;
/** Wait after a failure retrying cannot fix (bad credentials, bad request): do not hammer PolyV. */
export const CONFIG_ERROR_RETRY_MS = 5 * 60_000;

export type RefreshDecision =
  | { readonly kind: 'done'; readonly reason: string }
  | { readonly kind: 'next'; readonly at: number; readonly failures: number };

export interface RefreshProcessorDeps {
  accounts: AccountRegistry;
  service: ChannelTokenService;
  store: TokenStore;
  clock: Clock;
  logger: Logger;
  random?: () => number;
}

/**
 * One run of a channel's refresh job, as a plain function: whether the channel stays warm (an idle on-demand
 * channel, or a window past its end, leaves here without a PolyV call), then refresh if due, then say when to
 * run next (never after the channel would idle out or its window end). Transient failures back off
 * exponentially with jitter (the count of failures in a row lives in the channel's status); a spent budget
 * waits for its next slot; a channel PolyV calls illegal stops being warm; bad credentials are retried only
 * every few minutes.
 */
export async function processRefresh(deps: RefreshProcessorDeps, data: RefreshJobData): Promise<RefreshDecision> {
  const { accounts, service, store, clock, logger } = deps;
  const random = deps.random ?? Math.random;
  const account = accounts.byAppId(data.appId);
  if (account === undefined) return { kind: 'done', reason: 'unknown account' };
  const review = await service.review(account.appId, data.channelId);
  if (!review.stay) return { kind: 'done', reason: review.reason };
  if (review.opensAt !== null) return { kind: 'next', at: review.opensAt, failures: 0 };
  const bounded = (at: number) => Math.min(at, review.closesAt ?? Number.POSITIVE_INFINITY);

  try {
    const token = await service.refreshIfDue(account, data.channelId);
    return { kind: 'next', at: bounded(refreshDueAt(token.expireTime, service.timing, random)), failures: 0 };
  } catch (err) {
    if (err instanceof BrokerError && err.code === 'channel_not_in_account') return { kind: 'done', reason: 'channel not in account' };
    // Counted in the channel's status (each run is a new job); if Redis cannot count it, the shortest backoff.
    const failures = await store.countRefreshFailure(account.appId, data.channelId).catch(() => 1);
    const now = clock.now();
    if (err instanceof BrokerError) {
      // A spent budget, or the fleet's pause after `qps exceeds`: come back when it says, spread by a second.
      if (err.code === 'budget_exhausted' || (err.code === 'upstream_rate_limited' && err.retryAfterMs !== undefined)) {
        return { kind: 'next', at: bounded(now + (err.retryAfterMs ?? RETRY_CAP_MS) + Math.floor(random() * 1000)), failures };
      }
      if (!err.retryable) return { kind: 'next', at: bounded(now + CONFIG_ERROR_RETRY_MS), failures };
      return { kind: 'next', at: bounded(now + backoffMs(failures, RETRY_BASE_MS, RETRY_CAP_MS, random)), failures };
    }
    logger.error({ channelId: data.channelId, err }, 'unexpected error in refresh job');
    return { kind: 'next', at: bounded(now + backoffMs(failures, RETRY_BASE_MS, RETRY_CAP_MS, random)), failures };
  }
}
