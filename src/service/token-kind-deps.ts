import type { Clock } from '../lib/clock.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { PolyvClient } from '../polyv/polyv-client.js';
import type { RedisClient } from '../store/redis-scripts.js';
import type { RedisKeys } from '../store/redis-keys.js';
import type { SealedJson } from '../store/sealed-json.js';
import type { PolyvGateway } from './polyv-gateway.js';

/** What every service of the newer token kinds (viewer, common, watch URL) is built with. */
export interface TokenKindDeps {
  redis: RedisClient;
  sealed: SealedJson;
  keys: RedisKeys;
  polyv: PolyvClient;
  gateway: PolyvGateway;
  clock: Clock;
  metrics: BrokerMetrics;
  /** Calls per channel and rolling hour, unless the account's `budgets` say otherwise. */
  perHour: number;
}
