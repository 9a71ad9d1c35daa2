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
