import type { PolyvAccount } from '../config/config.js';
import type { CallReason, Caller } from '../domain/caller.js';
import { BudgetExhaustedError } from '../errors/broker-error.js';
import type { Logger } from '../lib/logger.js';
import type { PooledUrl } from '../store/kind-token-store.js';
import { recordServed } from './record-served.js';
import type { TokenKindDeps } from './token-kind-deps.js';

/** get-token-watch-url: the URL is valid for one hour, and dead once used. */
export const WATCH_URL_LIFETIME_MS = 3600 * 1000;

export interface WatchUrl {
  readonly url: string;
  /** One hour after the broker asked PolyV for it (never later than PolyV's own expiry). */
  readonly expireTime: number;
}

/** Asks for a pool top-up in the background (a deduplicated BullMQ job). */
export interface PoolRefillScheduler {
  requestPoolRefill(appId: string, channelId: string): Promise<void>;
}

export interface WatchUrlServiceOptions extends TokenKindDeps {
  logger: Logger;
  refills: PoolRefillScheduler;
  /** URLs kept pre-minted per warm channel; 0 = mint on demand only. */
  poolSize: number;
  /** A pooled URL older than this is dropped, never handed out. */
  poolMaxAgeSeconds: number;
}

/**
 * Single-use watch-page URLs. Each URL goes to exactly one caller across all replicas: minted on demand for
 * that caller (through the gateway, never shared, so no single-flight), or popped atomically from a
 * per-channel pool that the worker refills within budget. Pooled URLs are dropped long before their hour is up.
 */
export class WatchUrlService {
  private readonly o: WatchUrlServiceOptions;

  constructor(options: WatchUrlServiceOptions) {
    this.o = options;
  }

  private freshSince(): number {
    return this.o.clock.now() - this.o.poolMaxAgeSeconds * 1000;
  }

  async take(account: PolyvAccount, channelId: string, caller?: Caller): Promise<WatchUrl & { outcome: 'hit' | 'miss' }> {
    const { clock, metrics } = this.o;
    if (this.o.poolSize > 0) {
      const pooled = await this.o.store.popFreshUrl(account.appId, channelId, this.freshSince());
      this.refillSoon(account.appId, channelId);
      if (pooled !== null) {
        recordServed(metrics, 'watch_url', 'hit', pooled.expireTime - clock.now(), 0);
        return { url: pooled.url, expireTime: pooled.expireTime, outcome: 'hit' };
      }
    }
    const minted = await this.mint(account, channelId, 'miss', caller);
    recordServed(metrics, 'watch_url', 'miss', minted.expireTime - clock.now(), 0);
    return { url: minted.url, expireTime: minted.expireTime, outcome: 'miss' };
  }

  /**
   * Tops the channel's pool up to the configured size (the worker's job): drops stale URLs, then mints until
   * full or the budget says no. Returns how many were minted.
   */
  async refill(account: PolyvAccount, channelId: string): Promise<number> {
    if (this.o.poolSize === 0) return 0;
    const { store } = this.o;
    let size = await store.trimStaleUrls(account.appId, channelId, this.freshSince());
    let minted = 0;
    while (size < this.o.poolSize) {
      let url: PooledUrl;
      try {
        url = await this.mint(account, channelId, 'scheduled', undefined);
      } catch (err) {
        if (err instanceof BudgetExhaustedError) break;
        throw err;
      }
      size = await store.pushUrl(account.appId, channelId, url);
      minted += 1;
    }
    await store.expireUrlPool(account.appId, channelId, this.o.poolMaxAgeSeconds * 1000);
    return minted;
  }

  async poolSize(account: PolyvAccount, channelId: string): Promise<number> {
    return this.o.store.urlPoolSize(account.appId, channelId);
  }

  private mint(account: PolyvAccount, channelId: string, reason: CallReason, caller: Caller | undefined): Promise<PooledUrl> {
    return this.o.gateway.call({
      account,
      channelId,
      kind: 'watch_url',
      reason,
      caller,
      send: async () => {
        const mintedAt = this.o.clock.now();
        const url = await this.o.polyv.getTokenWatchUrl(account, channelId);
        return { url, mintedAt, expireTime: mintedAt + WATCH_URL_LIFETIME_MS };
      },
    });
  }

  private refillSoon(appId: string, channelId: string): void {
    this.o.refills.requestPoolRefill(appId, channelId).catch((err: unknown) => {
      this.o.logger.warn({ channelId, err: (err as Error).message }, 'could not request a watch URL pool refill');
    });
  }
}
