import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { AccountRegistry } from '../service/account-registry.js';
import type { ChannelTokenService } from '../service/channel-token-service.js';
import { isServable, refreshDueAt } from '../service/refresh-timing.js';
import type { TokenStore } from '../store/token-store.js';
import type { WarmSetStore } from '../store/warm-set-store.js';
import type { RefreshQueue } from './refresh-queue.js';

/** The key schema this code writes. */
export const KEY_SCHEMA_VERSION = 2;

export interface MigrateV1Deps {
  accounts: AccountRegistry;
  service: ChannelTokenService;
  store: TokenStore;
  warmSet: WarmSetStore;
  queue: RefreshQueue;
  clock: Clock;
  logger: Logger;
}

/**
 * Moves the warm set of key schema v1 (a set of channel IDs per account, each with a long-lived delayed BullMQ
 * job) into v2's schedule: configured channels become pinned, every other one on demand with its next refresh
 * where its cached token asks for it and `lastReadAt` now (v1 did not record reads, so each gets one idle time
 * from the migration). The token and status keys are the same in both schemas, so v1 and v2 replicas serve and
 * refresh the same tokens meanwhile (a refresh both schedule is one PolyV call: the lock and the compare).
 *
 * Runs at every worker's start-up and with every reconcile: v1 replicas of a rolling upgrade keep adding
 * channels to the v1 set until they are gone. A migrated channel's v1 job is removed (one a v1 worker is
 * running ends by itself: the channel is no longer in the v1 set). v2 queues its jobs in another queue, which
 * v1 workers do not read.
 */
export async function migrateV1(deps: MigrateV1Deps): Promise<number> {
  const { accounts, service, store, warmSet, clock, logger } = deps;
  let migrated = 0;
  for (const account of accounts.all) {
    const configured = new Set(account.channels);
    for await (const batch of warmSet.scanV1(account.appId)) {
      const expiries = await store.readExpiries(account.appId, batch);
      const now = clock.now();
      const dueTimes: Array<readonly [string, number]> = [];
      for (const [i, channelId] of batch.entries()) {
        if (configured.has(channelId)) continue;
        const expireTime = expiries[i] ?? null;
        dueTimes.push([channelId, expireTime !== null && isServable(expireTime, now, service.timing) ? refreshDueAt(expireTime, service.timing) : now]);
      }
      await service.ensurePinned(account.appId, batch.filter((ch) => configured.has(ch)));
      await warmSet.addManyIfAbsent(account.appId, dueTimes);
      await store.recordReadIfNone(account.appId, dueTimes.map(([channelId]) => channelId), now);
      await warmSet.removeV1(account.appId, batch);
      await deps.queue.removeV1Jobs(account.appId, batch);
      migrated += batch.length;
    }
  }
  if (migrated > 0) logger.info({ migrated, schema: KEY_SCHEMA_VERSION }, 'migrated warm channels from key schema v1');
  if ((await warmSet.schema()) !== KEY_SCHEMA_VERSION) await warmSet.markSchema(KEY_SCHEMA_VERSION);
  return migrated;
}
