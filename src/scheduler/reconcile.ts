import type { WatchUrlService } from '../service/watch-url-service.js';
import type { WarmSetStore } from '../store/warm-set-store.js';
import { migrateV1, type MigrateV1Deps } from './migrate-v1.js';
import type { RefreshQueue } from './refresh-queue.js';

export interface ReconcileResult {
  readonly warm: number;
  /** Pinned or windowed channels that had lost their place in the schedule (Redis lost data), put back. */
  readonly recreated: number;
  /** Configured channels pinned (again). */
  readonly pinned: number;
  /** Channels moved from key schema v1. */
  readonly migrated: number;
}

/**
 * Makes Redis agree with what must be true: the v1 warm set is migrated, every configured channel is pinned,
 * every pinned or windowed channel is in the schedule. Safe to run on every worker at once (each step is
 * idempotent).
 */
export async function reconcile(
  deps: MigrateV1Deps & {
    warmSet: WarmSetStore;
    queue: RefreshQueue;
    /** Present when watch-URL pools are on: every warm channel's pool gets a top-up request. */
    watchUrls?: WatchUrlService | undefined;
  },
): Promise<ReconcileResult> {
  const { accounts, service, warmSet, queue, clock } = deps;
  const migrated = await migrateV1(deps);
  let warm = 0;
  let recreated = 0;
  let pinned = 0;
  for (const account of accounts.all) {
    pinned += await service.ensurePinned(account.appId, account.channels);
    const now = clock.now();
    recreated += await warmSet.addManyIfAbsent(
      account.appId,
      (await warmSet.pinnedAndWindows(account.appId)).map((channelId) => [channelId, now] as const),
    );
    if (deps.watchUrls !== undefined) {
      for await (const batch of warmSet.scan(account.appId)) await Promise.all(batch.map((ch) => queue.requestPoolRefill(account.appId, ch)));
    }
    warm += (await warmSet.count(account.appId)).total;
  }
  return { warm, recreated, pinned, migrated };
}
