import type { RateLimit } from '../config/config.js';
import { BrokerError } from '../errors/broker-error.js';
import type { Clock } from '../lib/clock.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';

export interface ConsumerRateLimiterOptions {
  /** The limit of every consumer without its own (`rateLimit` in BROKER_CONFIG_FILE). */
  readonly defaults: RateLimit;
  readonly clock: Clock;
  /** Counts refusals in `polyv_broker_rate_limited_total` (label: the consumer's name, never its key). */
  readonly metrics?: BrokerMetrics;
}

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/**
 * One token bucket per consumer, held in this process: a replica's limit, not the fleet's (N replicas behind a
 * load balancer let a consumer through about N times as fast). It protects a replica's event loop and its
 * share of Redis and PolyV from one consumer; it needs no Redis round trip, so it costs the hot cached read
 * nothing and still works while Redis is down. Buckets exist only for authenticated consumers, so their number
 * is bounded by the configured keys.
 *
 * A request is charged once, however often it is checked (the fast token route checks it, then hands a cache
 * miss to express, whose auth middleware checks it again): the decision is remembered per request object.
 */
export class ConsumerRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  /** Where a request object keeps its decision (a property under a private symbol: cheaper than a WeakMap per request). */
  private readonly decided = Symbol('rate limit decision');

  constructor(private readonly options: ConsumerRateLimiterOptions) {}

  /** Whether any consumer can be limited at all (a consumer's own limit may still be 0 = none). */
  static isActive(defaults: RateLimit, perConsumer: ReadonlyArray<RateLimit | undefined>): boolean {
    return defaults.perSecond > 0 || perConsumer.some((l) => l !== undefined && l.perSecond > 0);
  }

  /**
   * Charges one request of `consumer` (its name and own limit, if any) and returns the 429 error to answer
   * when its bucket is empty, or undefined when the request may go on. The same `request` object is charged
   * only once; a repeated call returns the first decision.
   */
  charge(request: object, consumer: { readonly name: string; readonly rateLimit?: RateLimit | undefined }): BrokerError | undefined {
    const marked = request as { [key: symbol]: BrokerError | null | undefined };
    const earlier = marked[this.decided];
    if (earlier !== undefined) return earlier ?? undefined;
    const refusal = this.take(consumer.name, consumer.rateLimit ?? this.options.defaults);
    marked[this.decided] = refusal ?? null;
    if (refusal !== undefined) this.options.metrics?.rateLimited.inc({ consumer: consumer.name });
    return refusal;
  }

  private take(name: string, limit: RateLimit): BrokerError | undefined {
    if (limit.perSecond <= 0) return undefined;
    const now = this.options.clock.now();
    const burst = Math.max(1, limit.burst);
    let bucket = this.buckets.get(name);
    if (bucket === undefined) {
      bucket = { tokens: burst, updatedAt: now };
      this.buckets.set(name, bucket);
    }
    // A clock moved backwards refills nothing rather than draining the bucket.
    const elapsedMs = Math.max(0, now - bucket.updatedAt);
    bucket.tokens = Math.min(burst, bucket.tokens + (elapsedMs * limit.perSecond) / 1000);
    bucket.updatedAt = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return undefined;
    }
    const retryAfterMs = Math.ceil(((1 - bucket.tokens) * 1000) / limit.perSecond);
    return new BrokerError(
      'rate_limited',
      `consumer ${name} sent more than ${limit.perSecond} requests per second (burst ${burst}); try again after Retry-After seconds`,
      { retryAfterMs },
    );
  }
}
