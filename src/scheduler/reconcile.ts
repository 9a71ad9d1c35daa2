import type { Clock } from '../lib/clock.js';
import type { AccountRegistry } from '../service/account-registry.js';
import type { ChannelTokenService } from '../service/channel-token-service.js';
import { isServable, refreshDueAt } from '../service/refresh-timing.js';
import type { WatchUrlService } from '../service/watch-url-service.js';
import type { TokenStore } from '../store/token-store.js';
import type { RefreshQueue } from './refresh-queue.js';

export interface ReconcileResult {
  readonly warm: number;
  readonly recreated: number;
}

/**
 * Makes Redis agree with what must be true: every configured channel is warm, and every warm channel has a
 * refresh job. Safe to run on every worker at once (each step is idempotent).
 */
export async function reconcile(deps: {
  accounts: AccountRegistry;
  service: ChannelTokenService;
  store: TokenStore;
  queue: RefreshQueue;
  clock: Clock;
  /** Present when watch-URL pools are on: every warm channel's pool gets a top-up request. */
  watchUrls?: WatchUrlService | undefined;
}): Promise<ReconcileResult> {
  const { accounts, service, store, queue, clock } = deps;
  let warm = 0;
  let recreated = 0;
  for (const account of accounts.all) {
    for (const channelId of account.channels) await store.addWarm(account.appId, channelId);
    for await (const batch of store.scanWarm(account.appId)) {
      warm += batch.length;
      if (deps.watchUrls !== undefined) {
        await Promise.all(batch.map((ch) => queue.requestPoolRefill(account.appId, ch)));
      }
      const missing = (
        await Promise.all(batch.map(async (ch) => ((await queue.has(account.appId, ch)) ? null : ch)))
      ).filter((ch): ch is string => ch !== null);
      for (const channelId of missing) {
        const cached = await store.read(account.appId, channelId);
        const now = clock.now();
        const dueAt =
          cached !== null && isServable(cached.expireTime, now, service.timing)
            ? refreshDueAt(cached.expireTime, service.timing)
            : now;
        await service.schedule(account.appId, channelId, dueAt);
        recreated += 1;
      }
    }
  }
  return { warm, recreated };
}
