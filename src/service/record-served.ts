import type { TokenKind } from '../domain/token-kinds.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';

/** Counts a served token, its remaining life, and (never expected) a serve under the minimum TTL. */
export function recordServed(
  metrics: BrokerMetrics,
  kind: TokenKind,
  outcome: 'hit' | 'miss' | 'refresh' | 'report_too_soon',
  remainingMs: number,
  minTtlMs: number,
): void {
  metrics.tokensServed.inc({ kind, outcome });
  metrics.servedRemainingTtl.observe({ kind }, remainingMs / 1000);
  if (remainingMs < minTtlMs) metrics.servedBelowMinTtl.inc({ kind });
}

/**
 * recordServed for one kind and outcome with the label lookups done once: the hot read's hit costs two
 * increments and one observation, no label hashing.
 */
export function servedRecorder(metrics: BrokerMetrics, kind: TokenKind, outcome: 'hit' | 'miss' | 'refresh' | 'report_too_soon') {
  const served = metrics.tokensServed.labels({ kind, outcome });
  const remaining = metrics.servedRemainingTtl.labels({ kind });
  const belowMin = metrics.servedBelowMinTtl.labels({ kind });
  return (remainingMs: number, minTtlMs: number): void => {
    served.inc();
    remaining.observe(remainingMs / 1000);
    if (remainingMs < minTtlMs) belowMin.inc();
  };
}
