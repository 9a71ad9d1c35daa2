import { createHash } from 'node:crypto';
import type { PolyvAccount } from '../config/config.js';
import type { CallReason, Caller } from '../domain/caller.js';
import { TOKEN_KIND_INFO, type TokenKind } from '../domain/token-kinds.js';
import { BrokerError, BudgetExhaustedError, UpstreamError, failureRecord } from '../errors/broker-error.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { BudgetSlot, CallBudget } from '../store/call-budget.js';
import type { TokenStore } from '../store/token-store.js';
import type { AccountBudgets } from './account-budgets.js';

export interface GatewayOptions {
  budget: CallBudget;
  budgets: AccountBudgets;
  store: TokenStore;
  clock: Clock;
  metrics: BrokerMetrics;
  logger: Logger;
  rejectedChannelTtlSeconds: number;
  /** How long the fleet stops calling PolyV after `qps exceeds` (BROKER_UPSTREAM_PAUSE_SECONDS). */
  upstreamPauseMs: number;
}

/** One PolyV call as a token kind asks for it. */
export interface PolyvCall<T> {
  account: PolyvAccount;
  channelId: string;
  kind: TokenKind;
  /** Sends the request; called once per budget slot (twice when PolyV said `invalid timestamp.`). */
  send(slot: BudgetSlot): Promise<T>;
  /** Refuse when the channel is marked rejected (default true; the scheduled refresh tries anyway). */
  obeyRejected?: boolean | undefined;
  /** On-call's forced refresh: one try even while the account's credentials are recorded as refused. */
  force?: boolean | undefined;
  /** Why the call is made (a metric label). */
  reason: CallReason;
  /** The consumer whose request causes it (absent: the broker's own refresh); its quota applies. */
  caller?: Caller | undefined;
  /** The proactive refresh and on-call: may spend the channel's refresh reserve. */
  reserved?: boolean | undefined;
}

/**
 * The only code path to PolyV and the only place a budget slot is taken, for every token kind. In one round
 * trip it takes the fleet-wide slot (refused while the account's credentials are recorded as refused, except
 * for the one probe every few minutes) and the channel's slot for the kind's endpoint (refused while the
 * channel is marked rejected). Then it calls, re-signs once on `invalid timestamp.`, and records what PolyV
 * said about the channel (illegal: marked rejected) or the account (bad credentials: recorded for every
 * replica, so no read path of any kind calls PolyV again until the next probe) or the fleet (`qps exceeds`:
 * every replica pauses, then one probe). Each call is counted for the consumer that caused it.
 */
export class PolyvGateway {
  private readonly o: GatewayOptions;
  private readonly fingerprints = new WeakMap<PolyvAccount, string>();

  constructor(options: GatewayOptions) {
    this.o = options;
  }

  async call<T>(call: PolyvCall<T>): Promise<T> {
    const { account, channelId, kind } = call;
    const endpoint = TOKEN_KIND_INFO[kind].budget;
    for (let attempt = 1; ; attempt++) {
      const slot = await this.takeSlot(call);
      this.o.metrics.upstreamCallsCaused.inc({ consumer: call.caller?.name ?? '-', reason: call.reason });
      try {
        const result = await call.send(slot);
        if (slot.probe || call.force === true) await this.o.budget.clearAccountFailure(account.appId);
        if (slot.pauseProbe) {
          await this.o.budget.clearPause();
          this.o.logger.info('the probe after the pause went through: PolyV calls resume');
        }
        return result;
      } catch (err) {
        if (err instanceof UpstreamError && err.code === 'upstream_clock_skew' && attempt === 1) {
          this.o.logger.warn({ channelId, endpoint }, 'PolyV said invalid timestamp; re-signing once');
          continue;
        }
        await this.remember(account, channelId, err);
        throw err;
      }
    }
  }

  private async takeSlot(call: PolyvCall<unknown>): Promise<BudgetSlot> {
    const { account, channelId, kind } = call;
    try {
      return await this.o.budget.take(account.appId, channelId, this.o.budgets.perHour(account, kind), TOKEN_KIND_INFO[kind].budget, {
        obeyRejected: call.obeyRejected !== false,
        force: call.force === true,
        credentials: this.fingerprint(account),
        reserved: call.reserved === true,
        reservePerHour: kind === 'channel' ? this.o.budgets.refreshReserve(account) : 0,
        consumer: call.caller === undefined ? undefined : { name: call.caller.name, perHour: call.caller.upstreamPerHour },
      });
    } catch (err) {
      if (err instanceof BudgetExhaustedError) this.o.metrics.budgetRefusals.inc({ scope: err.scope });
      throw err;
    }
  }

  /**
   * Tells credentials apart without revealing them: a truncated SHA-256 of appId and appSecret, so a replica
   * started with a corrected secret is not held back by the failure of the old one.
   */
  private fingerprint(account: PolyvAccount): string {
    let fp = this.fingerprints.get(account);
    if (fp === undefined) {
      fp = createHash('sha256').update(`polyv-token-broker credentials\n${account.appId}\n${account.appSecret}`).digest('hex').slice(0, 16);
      this.fingerprints.set(account, fp);
    }
    return fp;
  }

  private async remember(account: PolyvAccount, channelId: string, err: unknown): Promise<void> {
    if (!(err instanceof BrokerError)) return;
    if (err.code === 'channel_not_in_account') {
      await this.o.store.markRejected(account.appId, channelId, err.message, this.o.rejectedChannelTtlSeconds * 1000);
    } else if (err.code === 'upstream_rate_limited') {
      await this.o.budget.recordPause(failureRecord(err, this.o.clock.now()), this.o.upstreamPauseMs);
      // An upstream state the broker rides out (cached tokens are served), not an error of the broker's.
      this.o.logger.warn(
        { pauseSeconds: this.o.upstreamPauseMs / 1000 },
        'PolyV said qps exceeds: every replica stops calling PolyV for the pause, then one probe; valid tokens are still served',
      );
    } else if (err.code === 'upstream_auth_failed') {
      await this.o.budget.recordAccountFailure(account.appId, failureRecord(err, this.o.clock.now()), this.fingerprint(account));
      this.o.logger.error({ appId: account.appId }, 'PolyV refused the account credentials; no call for this account until the next probe in 5 minutes');
    }
  }
}
