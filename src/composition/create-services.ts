import type { PolyvClient } from '../polyv/polyv-client.js';
import type { RefreshQueue } from '../scheduler/refresh-queue.js';
import { AccountBudgets } from '../service/account-budgets.js';
import { AccountRegistry } from '../service/account-registry.js';
import { ChannelRefresher } from '../service/channel-refresher.js';
import { ChannelTokenReader } from '../service/channel-token-reader.js';
import { ChannelTokenService } from '../service/channel-token-service.js';
import { CommonTokenService } from '../service/common-token-service.js';
import { DisposableTokenService } from '../service/disposable-token-service.js';
import { PolyvGateway } from '../service/polyv-gateway.js';
import { ReadTracker, readTrackingPolicy } from '../service/read-tracker.js';
import { SingleFlight } from '../service/single-flight.js';
import { ViewerTokenService } from '../service/viewer-token-service.js';
import { WarmCapacity, capacityFigures } from '../service/warm-capacity.js';
import { WarmChannels } from '../service/warm-channels.js';
import { WatchUrlService } from '../service/watch-url-service.js';
import type { AppContext } from './app-context.js';
import type { Stores } from './create-stores.js';

/** The configured accounts and one service per token kind: what the HTTP routes and the worker call. */
export interface Services {
  readonly accounts: AccountRegistry;
  readonly budgets: AccountBudgets;
  readonly channelTokens: ChannelTokenService;
  readonly disposable: DisposableTokenService;
  readonly viewerTokens: ViewerTokenService;
  readonly commonTokens: CommonTokenService;
  readonly watchUrls: WatchUrlService;
  /** Reads of channel tokens, noted in memory and written in batches (they keep on-demand channels warm). */
  readonly reads: ReadTracker;
  /** The warm set against the fleet-wide PolyV limit. */
  readonly capacity: WarmCapacity;
}

/**
 * Step 4: the refresh core (one single-flight, one gateway to PolyV) and the token-kind services on it, over
 * the stores, the PolyV client and the refresh queue. They own no connection (nothing here needs closing);
 * this is the only place that constructs them.
 */
export function createServices(ctx: AppContext, deps: { stores: Stores; polyv: PolyvClient; queue: RefreshQueue }): Services {
  const { config, clock, logger, metrics } = ctx;
  const { stores, polyv, queue } = deps;
  const { store, kindStore, budget, warmSet } = stores;
  const timing = { refreshBeforeMs: config.tokens.refreshBeforeSeconds * 1000, minTtlMs: config.tokens.minTtlSeconds * 1000 };
  const budgets = new AccountBudgets(
    {
      channel: config.budget.channelPerHour,
      watch_api: config.kinds.watchTokenPerHour,
      common: config.kinds.commonTokenPerHour,
      watch_url: config.kinds.watchUrlPerHour,
    },
    config.budget.refreshReservePerHour,
  );
  // The lock holds for two PolyV timeouts and 2 s: one call plus one re-signed retry.
  const flights = new SingleFlight({ clock, logger: logger.child({ module: 'single-flight' }), lockTtlMs: config.polyv.timeoutMs * 2 + 2000 });
  const gateway = new PolyvGateway({
    budget,
    budgets,
    store,
    clock,
    metrics,
    logger: logger.child({ module: 'polyv-gateway' }),
    rejectedChannelTtlSeconds: config.tokens.rejectedChannelTtlSeconds,
    upstreamPauseMs: config.budget.upstreamPauseSeconds * 1000,
  });
  const channelLogger = logger.child({ module: 'channel-tokens' });
  const idleMs = config.tokens.idleChannelSeconds * 1000;
  const readPolicy = readTrackingPolicy(idleMs);
  const accounts = new AccountRegistry(config.accounts);
  const capacity = new WarmCapacity({
    warmSet,
    appIds: accounts.all.map((a) => a.appId),
    figures: capacityFigures({ expireSeconds: config.tokens.expireSeconds, globalPer10s: config.budget.globalPer10s, timing }),
    clock,
    logger: logger.child({ module: 'warm-capacity' }),
  });
  const warmChannels = new WarmChannels({
    store,
    warmSet,
    budget,
    budgets,
    capacity,
    clock,
    timing,
    logger: logger.child({ module: 'warm-set' }),
    metrics,
    idleMs,
    idleGraceMs: readPolicy.graceMs,
  });
  const reads = new ReadTracker({ store, clock, logger: logger.child({ module: 'reads' }), policy: readPolicy });
  const refresher = new ChannelRefresher({
    store,
    flights,
    gateway,
    polyv,
    warmChannels,
    clock,
    logger: channelLogger,
    metrics,
    timing,
    expireSeconds: config.tokens.expireSeconds,
  });
  const reader = new ChannelTokenReader({
    store,
    refresher,
    clock,
    logger: channelLogger,
    metrics,
    timing,
    localCache: stores.localCache,
    reportMinAgeMs: config.tokens.reportMinAgeSeconds * 1000,
    reads,
  });
  const kindDeps = { store: kindStore, polyv, gateway, flights, clock, metrics };
  return {
    accounts,
    budgets,
    channelTokens: new ChannelTokenService({ reader, refresher, warmChannels, timing }),
    disposable: new DisposableTokenService({ polyv, gateway, clock, metrics, expireSeconds: config.tokens.expireSeconds }),
    viewerTokens: new ViewerTokenService({ ...kindDeps, minTtlSeconds: config.tokens.minTtlSeconds }),
    commonTokens: new CommonTokenService({
      ...kindDeps,
      minTtlSeconds: config.tokens.minTtlSeconds,
      reportMinAgeMs: config.tokens.reportMinAgeSeconds * 1000,
      ttlSeconds: config.kinds.commonTokenTtlSeconds,
    }),
    watchUrls: new WatchUrlService({
      ...kindDeps,
      logger: logger.child({ module: 'watch-urls' }),
      refills: queue,
      poolSize: config.kinds.watchUrlPool,
      poolMaxAgeSeconds: config.kinds.watchUrlPoolMaxAgeSeconds,
    }),
    reads,
    capacity,
  };
}
