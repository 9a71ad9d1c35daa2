import type { Dispatcher } from 'undici';
import { PolyvClient } from '../polyv/polyv-client.js';
import type { AppContext } from './app-context.js';

/** Step 2: the one HTTP client pool to PolyV (a test may hand in its own dispatcher). */
export function createPolyvClient({ config, clock, logger, metrics }: AppContext, dispatcher?: Dispatcher): PolyvClient {
  return new PolyvClient({
    baseUrl: config.polyv.baseUrl,
    timeoutMs: config.polyv.timeoutMs,
    connectTimeoutMs: config.polyv.connectTimeoutMs,
    clock,
    logger: logger.child({ module: 'polyv' }),
    metrics,
    ...(dispatcher === undefined ? {} : { dispatcher }),
  });
}
