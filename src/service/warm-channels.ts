import type { PolyvAccount } from '../config/config.js';
import { RequestError } from '../errors/broker-error.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { CallBudget } from '../store/call-budget.js';
import type { ChannelStatus, TokenStore } from '../store/token-store.js';
import type { WarmEntry, WarmSetStore, WarmWindow } from '../store/warm-set-store.js';
import type { AccountBudgets } from './account-budgets.js';
import { isServable, refreshDueAt, type TimingPolicy } from './refresh-timing.js';
import type { WarmCapacity } from './warm-capacity.js';

export type { WarmWindow } from '../store/warm-set-store.js';

/** How a warm channel shows in its state: kept until DELETE (or in its window), kept while read, or not warm. */
export type WarmState = 'pinned' | 'on-demand' | false;

export interface ChannelState {
  readonly channelId: string;
  readonly warm: WarmState;
  /** The warm window, when the channel has one (epoch ms; null: open on that side). */
  readonly warmFrom: number | null;
  readonly warmUntil: number | null;
  /** Last read on any replica, as recorded (to within a flush interval); null: none recorded. */
  readonly lastReadAt: number | null;
  readonly expireTime: number | null;
  readonly remainingSeconds: number | null;
  readonly lastRefreshAt: number | null;
  readonly nextRefreshAt: number | null;
  readonly callsLastHour: number;
  readonly budgetPerHour: number;
  readonly lastError: NonNullable<ChannelStatus['lastError']> | null;
}

/** What a scheduled refresh run does with its channel: leave the warm set, or refresh within bounds. */
export type WarmReview =
  | { readonly stay: false; readonly reason: 'not_warm' | 'idle' | 'window_ended' }
  | {
      readonly stay: true;
      /** Not before this (a window that has not opened yet): no refresh now, come back then. */
      readonly opensAt: number | null;
      /** The next run is due no later than this: the end of the window, or the moment the channel idles out. */
      readonly closesAt: number | null;
    };

export interface WarmChannelsOptions {
  store: TokenStore;
  warmSet: WarmSetStore;
  budget: CallBudget;
  budgets: AccountBudgets;
  capacity: WarmCapacity;
  clock: Clock;
  timing: TimingPolicy;
  logger: Logger;
  metrics: BrokerMetrics;
  /** An on-demand channel with no read for this long leaves the warm set (0: never). */
  idleMs: number;
  /** Added to `idleMs`: reads not yet written by a replica (see ReadTrackingPolicy). */
  idleGraceMs: number;
}

/**
 * The warm set: which channels are kept fresh and how each leaves again (pinned: by DELETE; on demand: after
 * the idle time without a read; in a window: at its end), when each is refreshed next, the capacity check on
 * channels joining on demand, and what on-call and `GET /v1/channels` see of each.
 */
export class WarmChannels {
  private readonly o: WarmChannelsOptions;

  constructor(options: WarmChannelsOptions) {
    this.o = options;
  }

  /** A window opens (its first refresh runs) this long before `warmFrom`, so the first read is a hit. */
  get windowLeadMs(): number {
    return this.o.timing.refreshBeforeMs;
  }

  /**
   * Pins a channel (warm until DELETE), or with a window makes it warm from shortly before `warmFrom` until
   * `warmUntil`; its refresh is due now if it has no servable token and the window is open.
   */
  async warm(account: PolyvAccount, channelId: string, window?: WarmWindow): Promise<ChannelState> {
    const { appId } = account;
    const now = this.o.clock.now();
    if (window?.warmUntil !== undefined && window.warmUntil !== null && window.warmUntil <= now) {
      throw new RequestError('invalid_request', `warmUntil (${new Date(window.warmUntil).toISOString()}) is not in the future`);
    }
    const dueAt = await this.dueFromToken(appId, channelId, now);
    if (window === undefined || (window.warmFrom === null && window.warmUntil === null)) {
      await this.o.warmSet.pin(appId, channelId, dueAt, now);
      this.o.metrics.warmJoined.inc({ mode: 'pinned' });
    } else {
      const opensAt = window.warmFrom === null ? null : window.warmFrom - this.windowLeadMs;
      await this.o.warmSet.setWindow(appId, channelId, window, opensAt !== null && opensAt > now ? opensAt : dueAt);
      this.o.metrics.warmJoined.inc({ mode: 'window' });
    }
    return this.describe(account, channelId);
  }

  /**
   * Keeps configured channels pinned (reconcile, migration): pins those not pinned yet, in one round trip
   * when all are (a reconcile of many pinned channels costs one HMGET per 500). Returns how many it pinned.
   */
  async ensurePinned(appId: string, channelIds: readonly string[]): Promise<number> {
    const missing = await this.o.warmSet.notPinned(appId, channelIds);
    for (const channelId of missing) {
      const now = this.o.clock.now();
      await this.o.warmSet.pin(appId, channelId, await this.dueFromToken(appId, channelId, now), now);
    }
    return missing.length;
  }

  /** Stops keeping a channel warm and forgets its cached token; returns whether it was warm. */
  async unwarm(account: PolyvAccount, channelId: string): Promise<boolean> {
    const was = await this.o.warmSet.leave(account.appId, channelId);
    await this.o.store.forget(account.appId, channelId);
    return was;
  }

  /**
   * After a fetch: a warm channel's next refresh is due at `dueAt`; a channel that is not warm joins on
   * demand (a read, a report or on-call asked for it: `mayJoin`), unless its scheduled refreshes would take
   * the warm set past the fleet-wide limit. A scheduled refresh never adds: its channel may have been
   * deleted while it ran.
   */
  async refreshed(appId: string, channelId: string, dueAt: number, mayJoin: boolean): Promise<void> {
    if (!mayJoin) return this.o.warmSet.reschedule(appId, channelId, dueAt);
    if (!(await this.o.capacity.hasRoom())) {
      await this.o.warmSet.reschedule(appId, channelId, dueAt);
      if ((await this.o.warmSet.entry(appId, channelId)) !== null) return;
      this.o.metrics.warmRefused.inc({ reason: 'capacity' });
      this.o.logger.debug({ appId, channelId }, 'channel read but not made warm: the warm set is at capacity');
      return;
    }
    if (!(await this.o.warmSet.add(appId, channelId, dueAt))) return;
    // Joining is a read (a miss, a report, on-call): its idle time starts now, whatever was recorded before.
    await this.o.store.recordReads([{ appId, channelId }], this.o.clock.now());
    this.o.capacity.admitted();
    this.o.metrics.warmJoined.inc({ mode: 'on-demand' });
  }

  /** Moves the next refresh of a channel still in the warm set (a worker's run ended). */
  reschedule(appId: string, channelId: string, dueAt: number): Promise<void> {
    return this.o.warmSet.reschedule(appId, channelId, dueAt);
  }

  /** PolyV called the channel illegal: it leaves the warm set. */
  async drop(appId: string, channelId: string): Promise<void> {
    await this.o.warmSet.leave(appId, channelId);
  }

  /**
   * A scheduled run's first step: whether the channel stays warm. An on-demand channel unread for the idle
   * time (plus grace), or a window past its end, leaves the warm set here, before any PolyV call.
   */
  async review(appId: string, channelId: string): Promise<WarmReview> {
    const entry = await this.o.warmSet.entry(appId, channelId);
    if (entry === null) return { stay: false, reason: 'not_warm' };
    const now = this.o.clock.now();
    if (entry.mode === 'pinned') return { stay: true, opensAt: null, closesAt: null };
    if (entry.mode === 'window') {
      const { warmFrom, warmUntil } = entry.window ?? { warmFrom: null, warmUntil: null };
      if (warmUntil !== null && now >= warmUntil) return this.leave(appId, channelId, 'window_ended');
      const opensAt = warmFrom === null ? null : warmFrom - this.windowLeadMs;
      return { stay: true, opensAt: opensAt !== null && now < opensAt ? opensAt : null, closesAt: warmUntil };
    }
    if (this.o.idleMs === 0) return { stay: true, opensAt: null, closesAt: null };
    let lastReadAt = (await this.o.store.readStatus(appId, channelId)).lastReadAt;
    if (lastReadAt === undefined) {
      // No read recorded (the replica that made it warm died first): its idle time starts now.
      await this.o.store.recordReadIfNone(appId, [channelId], now);
      lastReadAt = now;
    }
    const idleAt = lastReadAt + this.o.idleMs + this.o.idleGraceMs;
    if (now >= idleAt) return this.leave(appId, channelId, 'idle');
    return { stay: true, opensAt: null, closesAt: idleAt };
  }

  private async leave(appId: string, channelId: string, reason: 'idle' | 'window_ended'): Promise<WarmReview> {
    if (await this.o.warmSet.leave(appId, channelId)) {
      this.o.metrics.warmLeft.inc({ reason });
      this.o.logger.info({ appId, channelId, reason }, 'channel left the warm set');
    }
    return { stay: false, reason };
  }

  async describe(account: PolyvAccount, channelId: string): Promise<ChannelState> {
    const [entry, cached, status, calls] = await Promise.all([
      this.o.warmSet.entry(account.appId, channelId),
      this.o.store.read(account.appId, channelId),
      this.o.store.readStatus(account.appId, channelId),
      this.o.budget.used(account.appId, channelId),
    ]);
    const now = this.o.clock.now();
    return {
      channelId,
      warm: this.warmState(entry, now),
      warmFrom: entry?.window?.warmFrom ?? null,
      warmUntil: entry?.window?.warmUntil ?? null,
      lastReadAt: status.lastReadAt ?? null,
      expireTime: cached?.expireTime ?? null,
      remainingSeconds: cached === null ? null : Math.max(0, Math.floor((cached.expireTime - now) / 1000)),
      lastRefreshAt: status.lastRefreshAt ?? null,
      nextRefreshAt: entry?.nextRefreshAt ?? null,
      callsLastHour: calls,
      budgetPerHour: this.o.budgets.perHour(account, 'channel'),
      lastError: status.lastError ?? null,
    };
  }

  /** Every channel in the warm set (windows not yet open included), with its state. */
  async list(account: PolyvAccount): Promise<ChannelState[]> {
    const out: ChannelState[] = [];
    for await (const batch of this.o.warmSet.scan(account.appId)) {
      out.push(...(await Promise.all(batch.map((ch) => this.describe(account, ch)))));
    }
    return out.sort((a, b) => a.channelId.length - b.channelId.length || a.channelId.localeCompare(b.channelId));
  }

  /** A window channel shows as pinned while its window is open (from the lead before warmFrom), else not warm. */
  private warmState(entry: WarmEntry | null, now: number): WarmState {
    if (entry === null) return false;
    if (entry.mode !== 'window') return entry.mode;
    const { warmFrom, warmUntil } = entry.window ?? { warmFrom: null, warmUntil: null };
    const open = (warmFrom === null || now >= warmFrom - this.windowLeadMs) && (warmUntil === null || now < warmUntil);
    return open ? 'pinned' : false;
  }

  /** The refresh time the cached token asks for, or now when there is no servable token. */
  private async dueFromToken(appId: string, channelId: string, now: number): Promise<number> {
    const cached = await this.o.store.read(appId, channelId);
    return cached !== null && isServable(cached.expireTime, now, this.o.timing) ? refreshDueAt(cached.expireTime, this.o.timing) : now;
  }
}
