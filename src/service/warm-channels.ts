import type { PolyvAccount } from '../config/config.js';
import type { Clock } from '../lib/clock.js';
import type { CallBudget } from '../store/call-budget.js';
import type { ChannelStatus, TokenStore } from '../store/token-store.js';
import type { AccountBudgets } from './account-budgets.js';
import { isServable, refreshDueAt, type TimingPolicy } from './refresh-timing.js';

/** Schedules the proactive refresh of a warm channel; implemented on BullMQ by the scheduler layer. */
export interface RefreshScheduler {
  /**
   * Makes the channel's one refresh job due at `dueAt`. With `firstToken` (the channel had no token), a job
   * that already exists is left as it is: it was due earlier, and runs, finds nothing due and moves itself.
   */
  schedule(appId: string, channelId: string, dueAt: number, options?: { firstToken?: boolean }): Promise<void>;
  cancel(appId: string, channelId: string): Promise<void>;
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

export interface WarmChannelsOptions {
  store: TokenStore;
  budget: CallBudget;
  budgets: AccountBudgets;
  scheduler: RefreshScheduler;
  clock: Clock;
  timing: TimingPolicy;
}

/** The warm set: which channels are kept fresh, when each is refreshed next, and what on-call sees of each. */
export class WarmChannels {
  private readonly o: WarmChannelsOptions;

  constructor(options: WarmChannelsOptions) {
    this.o = options;
  }

  /** Keeps a channel warm: registers it and schedules its refresh (now, if it has no servable token). */
  async warm(account: PolyvAccount, channelId: string): Promise<ChannelState> {
    await this.o.store.addWarm(account.appId, channelId);
    const cached = await this.o.store.read(account.appId, channelId);
    const now = this.o.clock.now();
    const dueAt = cached !== null && isServable(cached.expireTime, now, this.o.timing) ? refreshDueAt(cached.expireTime, this.o.timing) : now;
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

  /** After a fetch: the channel is warm and its next refresh is due at `dueAt`. */
  async refreshed(appId: string, channelId: string, dueAt: number, firstToken: boolean): Promise<void> {
    await Promise.all([this.o.store.addWarm(appId, channelId), this.schedule(appId, channelId, dueAt, { firstToken })]);
  }

  /** PolyV called the channel illegal: it leaves the warm set and its refresh job goes. */
  async drop(appId: string, channelId: string): Promise<void> {
    await this.o.store.removeWarm(appId, channelId);
    await this.o.scheduler.cancel(appId, channelId);
  }

  /** Schedules the channel's refresh and records when, for on-call. */
  async schedule(appId: string, channelId: string, dueAt: number, options: { firstToken?: boolean } = {}): Promise<void> {
    // Independent writes (BullMQ and the status hash): sent together, one round trip instead of two.
    await Promise.all([this.o.scheduler.schedule(appId, channelId, dueAt, options), this.o.store.setNextRefresh(appId, channelId, dueAt)]);
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
      budgetPerHour: this.o.budgets.perHour(account, 'channel'),
      lastError: status.lastError ?? null,
    };
  }

  async list(account: PolyvAccount): Promise<ChannelState[]> {
    const out: ChannelState[] = [];
    for await (const batch of this.o.store.scanWarm(account.appId)) {
      out.push(...(await Promise.all(batch.map((ch) => this.describe(account, ch)))));
    }
    return out.sort((a, b) => a.channelId.length - b.channelId.length || a.channelId.localeCompare(b.channelId));
  }
}
