import type { PolyvAccount } from '../config/config.js';
import { BrokerError, BudgetExhaustedError, UpstreamError } from '../errors/broker-error.js';
import type { Logger } from '../lib/logger.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { BudgetSlot, CallBudget } from '../store/call-budget.js';
import type { TokenStore } from '../store/token-store.js';

/** The budget a PolyV endpoint draws from (one rolling-hour budget per channel and endpoint). */
export type BudgetEndpoint = 'channel-token' | 'watch-api-token' | 'common-token' | 'watch-url';

export interface GatewayOptions {
  budget: CallBudget;
  store: TokenStore;
  metrics: BrokerMetrics;
  logger: Logger;
  rejectedChannelTtlSeconds: number;
}

/**
 * The path every PolyV call of the newer token kinds takes: a channel PolyV called illegal is answered from
 * memory; a budget slot is taken first (fleet-wide, then the channel's for that endpoint); a single
 * `invalid timestamp.` is re-signed once with a fresh timestamp (a new slot).
 */
export class PolyvGateway {
  private readonly o: GatewayOptions;

  constructor(options: GatewayOptions) {
    this.o = options;
  }

  async call<T>(
    account: PolyvAccount,
    channelId: string,
    endpoint: BudgetEndpoint,
    perHour: number,
    send: (slot: BudgetSlot) => Promise<T>,
  ): Promise<T> {
    const rejected = await this.o.store.readRejected(account.appId, channelId);
    if (rejected !== null) {
      throw new BrokerError('channel_not_in_account', `channel ${channelId} does not belong to this PolyV account (${rejected})`);
    }
    for (let attempt = 1; ; attempt++) {
      let slot: BudgetSlot;
      try {
        slot = await this.o.budget.take(account.appId, channelId, perHour, endpoint);
      } catch (err) {
        if (err instanceof BudgetExhaustedError) this.o.metrics.budgetRefusals.inc({ scope: err.scope });
        throw err;
      }
      try {
        return await send(slot);
      } catch (err) {
        if (err instanceof UpstreamError && err.code === 'upstream_clock_skew' && attempt === 1) {
          this.o.logger.warn({ channelId, endpoint }, 'PolyV said invalid timestamp; re-signing once');
          continue;
        }
        if (err instanceof BrokerError && err.code === 'channel_not_in_account') {
          await this.o.store.markRejected(account.appId, channelId, err.message, this.o.rejectedChannelTtlSeconds * 1000);
        }
        throw err;
      }
    }
  }
}
