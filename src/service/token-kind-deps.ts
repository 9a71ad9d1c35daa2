import type { Clock } from '../lib/clock.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { PolyvClient } from '../polyv/polyv-client.js';
import type { KindTokenStore } from '../store/kind-token-store.js';
import type { PolyvGateway } from './polyv-gateway.js';
import type { SingleFlight } from './single-flight.js';

/** What every service of the newer token kinds (viewer, common, watch URL) is built with. */
export interface TokenKindDeps {
  store: KindTokenStore;
  polyv: PolyvClient;
  gateway: PolyvGateway;
  flights: SingleFlight;
  clock: Clock;
  metrics: BrokerMetrics;
}
