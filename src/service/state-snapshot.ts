import type { Clock } from '../lib/clock.js';
import type { StateSnapshot } from '../metrics/state-gauges.js';
import type { CallBudget } from '../store/call-budget.js';
import type { TokenStore } from '../store/token-store.js';
import type { WarmSetStore } from '../store/warm-set-store.js';
import type { AccountBudgets } from './account-budgets.js';
import type { AccountRegistry } from './account-registry.js';
import type { TimingPolicy } from './refresh-timing.js';
import type { WarmCapacity } from './warm-capacity.js';

/** A warm channel counts as stale this long after its refresh was due without a new token. */
export const STALE_GRACE_MS = 60_000;

export interface SnapshotDeps {
  accounts: AccountRegistry;
  store: TokenStore;
  warmSet: WarmSetStore;
  capacity: WarmCapacity;
  budget: CallBudget;
  /** The refresh queue's job counts by state (BullMQ's getJobCounts). */
  jobCounts(): Promise<Record<string, number>>;
  clock: Clock;
  timing: TimingPolicy;
  budgets: AccountBudgets;
  globalLimitPer10s: number;
  /** Per-channel series for at most this many warm channels; 0 turns them off. */
  maxLabeledChannels: number;
}

/** Reads the state the gauges report, in batched round trips (ZSCAN + pipelines), so it scales to many channels. */
export async function takeStateSnapshot(d: SnapshotDeps): Promise<StateSnapshot> {
  const now = d.clock.now();
  const channelBudgetsPerHour = Object.fromEntries(
    d.accounts.all.map((account) => [account.name, d.budgets.perHour(account, 'channel')]),
  );
  let warmChannels = 0;
  let staleChannels = 0;
  const warmByMode = { pinned: 0, 'on-demand': 0, window: 0 };
  let maxRatio = 0;
  const channels: Array<StateSnapshot['channels'][number]> = [];
  try {
    for (const account of d.accounts.all) {
      const [counts, windows] = await Promise.all([d.warmSet.count(account.appId), d.warmSet.windowsOf(account.appId)]);
      warmByMode.pinned += counts.pinned;
      warmByMode['on-demand'] += counts.onDemand;
      warmByMode.window += counts.window;
      // A window that has not opened has no token yet, and is not late.
      const notOpen = (channelId: string) => {
        const from = windows.get(channelId)?.warmFrom ?? null;
        return from !== null && now < from - d.timing.refreshBeforeMs;
      };
      for await (const batch of d.warmSet.scan(account.appId)) {
        const [expiries, used] = await Promise.all([
          d.store.readExpiries(account.appId, batch),
          d.budget.usedMany(account.appId, batch),
        ]);
        batch.forEach((channelId, i) => {
          const expireTime = expiries[i] ?? null;
          const calls = used[i] ?? 0;
          warmChannels += 1;
          maxRatio = Math.max(maxRatio, calls / d.budgets.perHour(account, 'channel'));
          const late = expireTime === null || now > expireTime - d.timing.refreshBeforeMs + STALE_GRACE_MS;
          if (late && !notOpen(channelId)) staleChannels += 1;
          if (channels.length < d.maxLabeledChannels) {
            channels.push({
              account: account.name,
              channelId,
              callsLastHour: calls,
              remainingSeconds: expireTime === null ? null : Math.max(0, (expireTime - now) / 1000),
            });
          }
        });
      }
    }
    const [jobs, globalCalls, pause] = await Promise.all([
      d.jobCounts(),
      d.budget.globalUsed(),
      d.budget.readPause(),
    ]);
    return {
      redisUp: true,
      warmChannels,
      warmByMode,
      warmCapacityRatio: d.capacity.utilization(warmChannels),
      warmCapacityChannels: d.capacity.figures.capacityChannels,
      staleChannels,
      jobs,
      globalCallsLast10s: globalCalls,
      globalLimitPer10s: d.globalLimitPer10s,
      // The record lasts from `qps exceeds` until the probe after the pause goes through (see CallBudget.take).
      upstreamPaused: pause !== null,
      channelBudgetsPerHour,
      maxBudgetUsedRatio: maxRatio,
      channels,
    };
  } catch {
    return {
      redisUp: false,
      warmChannels,
      warmByMode,
      warmCapacityRatio: d.capacity.utilization(warmChannels),
      warmCapacityChannels: d.capacity.figures.capacityChannels,
      staleChannels,
      jobs: {},
      globalCallsLast10s: 0,
      globalLimitPer10s: d.globalLimitPer10s,
      upstreamPaused: false,
      channelBudgetsPerHour,
      maxBudgetUsedRatio: 0,
      channels: [],
    };
  }
}
