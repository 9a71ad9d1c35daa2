import type { PolyvClient } from '../polyv/polyv-client.js';
import type { RefreshQueue } from '../scheduler/refresh-queue.js';
import { AccountRegistry } from '../service/account-registry.js';
import { ChannelTokenService } from '../service/channel-token-service.js';
import { CommonTokenService } from '../service/common-token-service.js';
import { DisposableTokenService } from '../service/disposable-token-service.js';
import { PolyvGateway } from '../service/polyv-gateway.js';
import { SingleFlight } from '../service/single-flight.js';
import { ViewerTokenService } from '../service/viewer-token-service.js';
import { WatchUrlService } from '../service/watch-url-service.js';
import type { AppContext } from './app-context.js';
import type { Stores } from './create-stores.js';

/** The configured accounts and one service per token kind: what the HTTP routes and the worker call. */
export interface Services {
  readonly accounts: AccountRegistry;
  readonly channelTokens: ChannelTokenService;
  readonly disposable: DisposableTokenService;
  readonly viewerTokens: ViewerTokenService;
  readonly commonTokens: CommonTokenService;
  readonly watchUrls: WatchUrlService;
}

/**
 * Step 4: the token-kind services, over the stores, the PolyV client and the refresh queue. They own no
 * connection (nothing here needs closing); this is the only place that constructs them.
 */
export function createServices(ctx: AppContext, deps: { stores: Stores; polyv: PolyvClient; queue: RefreshQueue }): Services {
  const { config, clock, logger, metrics } = ctx;
  const { stores, polyv, queue } = deps;
  const { redis, keys, sealed, store, budget } = stores;
  // The refresh lock and the single-flight lock hold for two PolyV timeouts and 2 s.
  const lockTtlMs = config.polyv.timeoutMs * 2 + 2000;
  const channelTokens = new ChannelTokenService({
    store,
    budget,
    polyv,
    scheduler: queue,
    clock,
    logger: logger.child({ module: 'channel-tokens' }),
    metrics,
    expireSeconds: config.tokens.expireSeconds,
    refreshBeforeSeconds: config.tokens.refreshBeforeSeconds,
    minTtlSeconds: config.tokens.minTtlSeconds,
    rejectedChannelTtlSeconds: config.tokens.rejectedChannelTtlSeconds,
    channelBudgetPerHour: config.budget.channelPerHour,
    lockTtlMs,
    ...(stores.localCache === undefined ? {} : { localCache: stores.localCache }),
  });
  const gateway = new PolyvGateway({
    budget,
    store,
    metrics,
    logger: logger.child({ module: 'polyv-gateway' }),
    rejectedChannelTtlSeconds: config.tokens.rejectedChannelTtlSeconds,
  });
  const flights = new SingleFlight({ redis, lock: stores.lock, lockTtlMs });
  const kindDeps = { redis, sealed, keys, polyv, gateway, clock, metrics, minTtlSeconds: config.tokens.minTtlSeconds };
  return {
    accounts: new AccountRegistry(config.accounts),
    channelTokens,
    disposable: new DisposableTokenService({
      polyv,
      gateway,
      clock,
      metrics,
      expireSeconds: config.tokens.expireSeconds,
      perHour: (account) => account.budgets?.channelTokenPerHour ?? config.budget.channelPerHour,
    }),
    viewerTokens: new ViewerTokenService({ ...kindDeps, flights, perHour: config.kinds.watchTokenPerHour }),
    commonTokens: new CommonTokenService({
      ...kindDeps,
      flights,
      perHour: config.kinds.commonTokenPerHour,
      ttlSeconds: config.kinds.commonTokenTtlSeconds,
    }),
    watchUrls: new WatchUrlService({
      ...kindDeps,
      logger: logger.child({ module: 'watch-urls' }),
      refills: queue,
      perHour: config.kinds.watchUrlPerHour,
      poolSize: config.kinds.watchUrlPool,
      poolMaxAgeSeconds: config.kinds.watchUrlPoolMaxAgeSeconds,
    }),
  };
}
