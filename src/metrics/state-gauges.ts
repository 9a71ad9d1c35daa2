import type { BrokerMetrics } from './broker-metrics.js';

/** One point-in-time reading of shared state, taken at scrape time. */
export interface StateSnapshot {
  readonly redisUp: boolean;
  readonly warmChannels: number;
  /** Warm channels by how they leave: pinned (DELETE), on-demand (idle time), window (its end; not yet open included). */
  readonly warmByMode: Readonly<Record<'pinned' | 'on-demand' | 'window', number>>;
  /** Scheduled refreshes of the warm set as a share of the fleet-wide PolyV limit. */
  readonly warmCapacityRatio: number;
  /** Warm channels whose scheduled refreshes alone would reach the fleet-wide limit (configuration). */
  readonly warmCapacityChannels: number;
  /** Warm channels without a token, or whose token is past its refresh time by more than the grace. */
  readonly staleChannels: number;
  readonly jobs: Readonly<Record<string, number>>;
  readonly globalCallsLast10s: number;
  readonly globalLimitPer10s: number;
  /**
   * Whether the fleet's PolyV calls are paused after PolyV said `qps exceeds`: the pause is recorded and has not
   * ended yet, or it has and its probe has not gone through (the record lasts until the probe's success).
   */
  readonly upstreamPaused: boolean;
  /** get-channel-token budget per channel and hour, by account name (configuration, not read from Redis). */
  readonly channelBudgetsPerHour: Readonly<Record<string, number>>;
  /** Highest share of its hourly budget any warm channel has used (0..1). */
  readonly maxBudgetUsedRatio: number;
  /** Per-channel readings, only for the first `maxLabeledChannels` warm channels (empty when labels are off). */
  readonly channels: ReadonlyArray<{ account: string; channelId: string; callsLastHour: number; remainingSeconds: number | null }>;
}

export type SnapshotSource = () => Promise<StateSnapshot>;

/** Shares one snapshot between the gauges of one scrape (and scrapes closer than `maxAgeMs`). */
function cached(source: SnapshotSource, maxAgeMs: number): SnapshotSource {
  let at = 0;
  let last: Promise<StateSnapshot> | undefined;
  return () => {
    const now = Date.now();
    if (last === undefined || now - at > maxAgeMs) {
      at = now;
      last = source().catch((err: unknown) => {
        at = 0;
        throw err;
      });
    }
    return last;
  };
}

/**
 * Gauges computed from Redis at scrape time (prom-client `collect()`): warm and stale channels, BullMQ job
 * counts, the global limiter, the fleet's pause after `qps exceeds`, budget use. Per-channel series are bounded (see BROKER_METRICS_CHANNEL_LABELS).
 */
export function registerStateGauges(metrics: BrokerMetrics, source: SnapshotSource): void {
  const snapshot = cached(source, 1000);
  const read = async (): Promise<StateSnapshot | undefined> => {
    try {
      return await snapshot();
    } catch {
      return undefined;
    }
  };
  metrics.gauge('polyv_broker_redis_up', 'Whether Redis answered the last scrape (1) or not (0).', [], async (g) => {
    const s = await read();
    g.set(s?.redisUp === true ? 1 : 0);
  });
  metrics.gauge('polyv_broker_warm_channels', 'Channels kept warm (refreshed ahead of expiry).', [], async (g) => {
    const s = await read();
    if (s !== undefined) g.set(s.warmChannels);
  });
  metrics.gauge('polyv_broker_warm_channels_by_mode', 'Warm channels by mode: pinned (until DELETE), on-demand (until idle), window (warmFrom/warmUntil; windows not yet open included).', ['mode'], async (g) => {
    const s = await read();
    if (s === undefined || !s.redisUp) return;
    for (const [mode, n] of Object.entries(s.warmByMode)) g.set({ mode }, n);
  });
  metrics.gauge(
    'polyv_broker_warm_capacity_ratio',
    'Scheduled refreshes of the warm set (channels x calls per channel-hour) as a share of the fleet-wide PolyV limit; above 1 they alone would exceed it.',
    [],
    async (g) => {
      const s = await read();
      if (s?.redisUp === true) g.set(s.warmCapacityRatio);
    },
  );
  metrics.gauge(
    'polyv_broker_warm_capacity_channels',
    'Warm channels whose scheduled refreshes alone would reach the fleet-wide PolyV limit, at the configured token lifetime.',
    [],
    async (g) => {
      const s = await read();
      if (s !== undefined) g.set(s.warmCapacityChannels);
    },
  );
  metrics.gauge(
    'polyv_broker_stale_channels',
    'Warm channels with no token, or whose token is past its due refresh time by more than 60 s.',
    [],
    async (g) => {
      const s = await read();
      if (s !== undefined) g.set(s.staleChannels);
    },
  );
  metrics.gauge('polyv_broker_queue_jobs', 'BullMQ refresh-queue jobs by state.', ['state'], async (g) => {
    const s = await read();
    if (s === undefined) return;
    g.reset();
    for (const [state, n] of Object.entries(s.jobs)) g.set({ state }, n);
  });
  metrics.gauge(
    'polyv_broker_global_calls_last_10s',
    'PolyV calls of the whole fleet in the rolling 10 s (the per-IP limit).',
    [],
    async (g) => {
      const s = await read();
      if (s !== undefined) g.set(s.globalCallsLast10s);
    },
  );
  metrics.gauge('polyv_broker_global_limit_per_10s', 'Configured fleet-wide limit of PolyV calls per 10 s.', [], async (g) => {
    const s = await read();
    if (s !== undefined) g.set(s.globalLimitPer10s);
  });
  metrics.gauge(
    'polyv_broker_upstream_paused',
    'Whether the fleet has stopped calling PolyV after PolyV said qps exceeds (1: the pause lasts, or its probe has not gone through yet; 0: calls flow).',
    [],
    async (g) => {
      const s = await read();
      // Unknown while Redis does not answer: the last reading stands (polyv_broker_redis_up says why).
      if (s?.redisUp === true) g.set(s.upstreamPaused ? 1 : 0);
    },
  );
  metrics.gauge(
    'polyv_broker_channel_budget_per_hour',
    'Configured get-channel-token budget per channel and hour, by account.',
    ['account'],
    async (g) => {
      const s = await read();
      if (s === undefined) return;
      for (const [account, budget] of Object.entries(s.channelBudgetsPerHour)) g.set({ account }, budget);
    },
  );
  metrics.gauge(
    'polyv_broker_channel_budget_used_max_ratio',
    'Highest share of its hourly budget that any warm channel has used (0..1).',
    [],
    async (g) => {
      const s = await read();
      if (s !== undefined) g.set(s.maxBudgetUsedRatio);
    },
  );
  metrics.gauge(
    'polyv_broker_channel_calls_last_hour',
    'get-channel-token calls per warm channel in the rolling hour (bounded set of channels).',
    ['account', 'channel'],
    async (g) => {
      const s = await read();
      if (s === undefined) return;
      g.reset();
      for (const c of s.channels) g.set({ account: c.account, channel: c.channelId }, c.callsLastHour);
    },
  );
  metrics.gauge(
    'polyv_broker_channel_token_remaining_seconds',
    'Remaining lifetime of each warm channel token (bounded set of channels).',
    ['account', 'channel'],
    async (g) => {
      const s = await read();
      if (s === undefined) return;
      g.reset();
      for (const c of s.channels) {
        if (c.remainingSeconds !== null) g.set({ account: c.account, channel: c.channelId }, c.remainingSeconds);
      }
    },
  );
}
