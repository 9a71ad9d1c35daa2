import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type ServeOutcome = 'hit' | 'miss' | 'refresh' | 'unavailable' | 'rejected';

/**
 * Every metric the broker exports, registered on one injected Registry (never the global one: tests build
 * the app many times). Names follow Prometheus conventions: `polyv_broker_` prefix, base units.
 */
export class BrokerMetrics {
  readonly registry: Registry;
  readonly tokensServed: Counter<'kind' | 'outcome'>;
  readonly serveDuration: Histogram<'kind' | 'outcome'>;
  readonly servedRemainingTtl: Histogram<'kind'>;
  readonly servedBelowMinTtl: Counter<'kind'>;
  readonly polyvCalls: Counter<'endpoint' | 'outcome' | 'error_class'>;
  readonly polyvCallDuration: Histogram<'endpoint' | 'outcome'>;
  readonly refreshes: Counter<'trigger' | 'outcome'>;
  readonly refreshLeadTime: Histogram<'trigger'>;
  readonly budgetRefusals: Counter<'scope'>;
  readonly rateLimited: Counter<'consumer'>;
  readonly streamsOpen: Gauge;
  readonly streamEventsSent: Counter<'event'>;
  readonly streamSlowReaderDrops: Counter;
  readonly requests: Counter<'consumer' | 'kind' | 'outcome'>;
  readonly upstreamCallsCaused: Counter<'consumer' | 'reason'>;
  readonly warmJoined: Counter<'mode'>;
  readonly warmRefused: Counter<'reason'>;
  readonly warmLeft: Counter<'reason'>;

  constructor(options: { registry?: Registry; defaultMetrics?: boolean } = {}) {
    this.registry = options.registry ?? new Registry();
    const registers = [this.registry];
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'polyv_broker_' });

    this.tokensServed = new Counter({
      name: 'polyv_broker_tokens_served_total',
      help: 'Token requests answered, by token kind and outcome (hit, miss, refresh, unavailable, rejected).',
      labelNames: ['kind', 'outcome'] as const,
      registers,
    });
    this.serveDuration = new Histogram({
      name: 'polyv_broker_serve_duration_seconds',
      help: 'Time to answer a token request, by token kind and outcome.',
      labelNames: ['kind', 'outcome'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.servedRemainingTtl = new Histogram({
      name: 'polyv_broker_served_token_remaining_seconds',
      help: 'Remaining lifetime of tokens at the moment they were served.',
      labelNames: ['kind'] as const,
      buckets: [30, 60, 120, 300, 600, 900, 1200, 1800, 2400, 3000, 3600, 7200, 18000],
      registers,
    });
    this.servedBelowMinTtl = new Counter({
      name: 'polyv_broker_tokens_served_below_min_ttl_total',
      help: 'Tokens served with less than BROKER_MIN_TTL_SECONDS left. Must stay 0: it exists to prove a negative.',
      labelNames: ['kind'] as const,
      registers,
    });
    this.polyvCalls = new Counter({
      name: 'polyv_broker_polyv_calls_total',
      help: 'Calls made to PolyV, by endpoint, outcome (success, error) and error class.',
      labelNames: ['endpoint', 'outcome', 'error_class'] as const,
      registers,
    });
    this.polyvCallDuration = new Histogram({
      name: 'polyv_broker_polyv_call_duration_seconds',
      help: 'Duration of PolyV calls, by endpoint and outcome.',
      labelNames: ['endpoint', 'outcome'] as const,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.refreshes = new Counter({
      name: 'polyv_broker_refreshes_total',
      help: 'Channel token refresh attempts, by trigger (scheduled, miss, rejected) and outcome.',
      labelNames: ['trigger', 'outcome'] as const,
      registers,
    });
    this.refreshLeadTime = new Histogram({
      name: 'polyv_broker_refresh_lead_seconds',
      help: 'How long before the previous token expired a refresh replaced it (negative: after it expired).',
      labelNames: ['trigger'] as const,
      buckets: [-60, 0, 30, 60, 120, 180, 240, 300, 450, 600, 900, 1800, 3600],
      registers,
    });
    this.budgetRefusals = new Counter({
      name: 'polyv_broker_budget_refusals_total',
      help: 'PolyV calls not made because a budget was spent, by scope (channel, global).',
      labelNames: ['scope'] as const,
      registers,
    });
    this.rateLimited = new Counter({
      name: 'polyv_broker_rate_limited_total',
      help: 'Requests answered 429 because the consumer exceeded its rate limit on this replica, by consumer name.',
      labelNames: ['consumer'] as const,
      registers,
    });
    this.streamsOpen = new Gauge({
      name: 'polyv_broker_streams_open',
      help: 'Token streams (Server-Sent Events) open on this replica.',
      registers,
    });
    this.streamEventsSent = new Counter({
      name: 'polyv_broker_stream_events_sent_total',
      help: 'Events written to token streams, by event (token, forgotten, unavailable); heartbeats are not counted.',
      labelNames: ['event'] as const,
      registers,
    });
    this.streamSlowReaderDrops = new Counter({
      name: 'polyv_broker_stream_slow_reader_drops_total',
      help: 'Token streams this replica closed because the consumer did not read what was sent.',
      registers,
    });
    this.requests = new Counter({
      name: 'polyv_broker_requests_total',
      help: 'Token requests by consumer name, token kind and outcome (hit, miss, refresh, report_too_soon, or the error code).',
      labelNames: ['consumer', 'kind', 'outcome'] as const,
      registers,
    });
    this.upstreamCallsCaused = new Counter({
      name: 'polyv_broker_upstream_calls_caused_total',
      help: 'PolyV calls by the consumer whose request caused them (- for the broker itself) and why (miss, disposable, report, scheduled, manual).',
      labelNames: ['consumer', 'reason'] as const,
      registers,
    });
    this.warmJoined = new Counter({
      name: 'polyv_broker_warm_joined_total',
      help: 'Channels that joined the warm set, by mode (on-demand: a read; pinned and window: configuration or PUT).',
      labelNames: ['mode'] as const,
      registers,
    });
    this.warmRefused = new Counter({
      name: 'polyv_broker_warm_refused_total',
      help: 'Channels read but not made warm because their scheduled refreshes would exceed the fleet-wide PolyV limit (reason=capacity).',
      labelNames: ['reason'] as const,
      registers,
    });
    this.warmLeft = new Counter({
      name: 'polyv_broker_warm_left_total',
      help: 'Channels that left the warm set by themselves: idle (no read for BROKER_IDLE_CHANNEL_SECONDS) or window_ended.',
      labelNames: ['reason'] as const,
      registers,
    });
  }

  /** Registers a gauge whose value is computed at scrape time. */
  gauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    collect: (gauge: Gauge<L>) => Promise<void> | void,
  ): Gauge<L> {
    return new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        await collect(this);
      },
    });
  }
}
