import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { Dispatcher } from 'undici';
import type { Config } from './config/config.js';
import { ApiKeyAuth } from './http/api-key-auth.js';
import { authorize } from './http/authorize.js';
import { closeAdmin, createAdminApp, listenAdmin } from './http/create-admin-app.js';
import { createHttpApp } from './http/create-http-app.js';
import { createHttpServer } from './http/create-http-server.js';
import { ConsumerRateLimiter } from './http/consumer-rate-limiter.js';
import { closeOrDrop, settlesWithin } from './lib/settle-within.js';
import { systemClock, type Clock } from './lib/clock.js';
import { createLogger, type Logger } from './lib/logger.js';
import { BrokerMetrics } from './metrics/broker-metrics.js';
import { registerStateGauges } from './metrics/state-gauges.js';
import { PolyvClient } from './polyv/polyv-client.js';
import { RefreshQueue } from './scheduler/refresh-queue.js';
import { RefreshWorker } from './scheduler/refresh-worker.js';
import { AccountRegistry } from './service/account-registry.js';
import { AccountBudgets } from './service/account-budgets.js';
import { ChannelRefresher } from './service/channel-refresher.js';
import { ChannelTokenReader } from './service/channel-token-reader.js';
import { ChannelTokenService } from './service/channel-token-service.js';
import { WarmChannels } from './service/warm-channels.js';
import { LocalTokenCache } from './service/local-token-cache.js';
import { withFastTokenRoute } from './http/fast-token-route.js';
import { CommonTokenService } from './service/common-token-service.js';
import { DisposableTokenService } from './service/disposable-token-service.js';
import { PolyvGateway } from './service/polyv-gateway.js';
import { SingleFlight } from './service/single-flight.js';
import { ViewerTokenService } from './service/viewer-token-service.js';
import { WatchUrlService } from './service/watch-url-service.js';
import { takeStateSnapshot } from './service/state-snapshot.js';
import { CallBudget } from './store/call-budget.js';
import { closeRedis, createBullmqRedis, createRedisClient, duplicateForSubscriber, pingRedis, resolveRedisTarget } from './store/redis-connection.js';
import { connectOrExplain, probeKeys } from './store/redis-startup-check.js';
import { RedisKeys } from './store/redis-keys.js';
import { KindTokenStore } from './store/kind-token-store.js';
import { SealedJson } from './store/sealed-json.js';
import { TokenCipher } from './store/token-cipher.js';
import { TokenStore } from './store/token-store.js';

export interface BrokerAppOptions {
  config: Config;
  /**
   * The Redis to use unless the config names a Cluster or Sentinel (REDIS_CLUSTER_NODES, REDIS_SENTINELS);
   * the caller resolves the embedded server when REDIS_URL is unset.
   */
  redisUrl?: string | undefined;
  clock?: Clock;
  logger?: Logger;
  metrics?: BrokerMetrics;
  polyvDispatcher?: Dispatcher;
}

export interface BrokerApp {
  readonly config: Config;
  readonly http: Express;
  readonly service: ChannelTokenService;
  readonly accounts: AccountRegistry;
  readonly store: TokenStore;
  readonly budget: CallBudget;
  /** Every account's per-channel budget of each token kind. */
  readonly budgets: AccountBudgets;
  readonly queue: RefreshQueue;
  readonly metrics: BrokerMetrics;
  readonly worker: RefreshWorker | undefined;
  readonly watchUrls: WatchUrlService;
  /** Base URL of the admin listener (BROKER_ADMIN_PORT) once started; undefined without one. */
  readonly adminUrl: string | undefined;
  /**
   * Connects the commands client and runs the start-up check, without serving or refreshing (the on-call
   * CLI uses the stores this way); start() does it first. Idempotent.
   */
  connect(): Promise<void>;
  /** Listens on the configured port (0 = any free port); resolves with the base URL. */
  start(): Promise<string>;
  /** Stops in reverse order: HTTP, worker (in-flight refreshes finish), queue, PolyV pool, Redis. */
  stop(): Promise<void>;
}

/** The composition root: the only place that constructs clients, stores, workers and the HTTP server. */
export function buildBrokerApp(options: BrokerAppOptions): BrokerApp {
  const { config } = options;
  const redisTarget = resolveRedisTarget(config, options.redisUrl);
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger(config.logLevel);
  const metrics = options.metrics ?? new BrokerMetrics();
  const keys = new RedisKeys(config.redisPrefix);
  const redis = createRedisClient(redisTarget, 'commands', logger.child({ module: 'redis' }));
  // On a Cluster, BullMQ gets a Cluster instance the broker owns (closed in stop()); otherwise options.
  const bullRedis = createBullmqRedis(redisTarget, logger.child({ module: 'redis' }));
  const bullConnection = bullRedis.connection;
  const accounts = new AccountRegistry(config.accounts);

  const cipher = new TokenCipher({ currentKey: config.encryption.key, oldKeys: config.encryption.oldKeys });
  const store = new TokenStore({ redis, keys, cipher, logger: logger.child({ module: 'token-store' }) });
  const budget = new CallBudget({ redis, keys, clock, globalPer10s: config.budget.globalPer10s });
  // Serving replicas keep tokens in memory, invalidated over pub/sub on a connection of its own.
  const localCache =
    config.role === 'worker' || config.localCache.maxAgeMs === 0 || config.localCache.maxEntries === 0
      ? undefined
      : new LocalTokenCache({
          subscriber: duplicateForSubscriber(redis, 'polyv-token-broker:events'),
          channel: keys.events(),
          clock,
          logger: logger.child({ module: 'local-token-cache' }),
          minTtlMs: config.tokens.minTtlSeconds * 1000,
          maxAgeMs: config.localCache.maxAgeMs,
          maxEntries: config.localCache.maxEntries,
        });
  if (localCache !== undefined) store.onTokenChange((appId, channelId) => localCache.invalidate(appId, channelId));
  const polyv = new PolyvClient({
    baseUrl: config.polyv.baseUrl,
    timeoutMs: config.polyv.timeoutMs,
    connectTimeoutMs: config.polyv.connectTimeoutMs,
    clock,
    logger: logger.child({ module: 'polyv' }),
    metrics,
    ...(options.polyvDispatcher === undefined ? {} : { dispatcher: options.polyvDispatcher }),
  });
  const queue = new RefreshQueue({ connection: bullConnection, prefix: keys.bullPrefix(), clock, logger });
  const timing = { refreshBeforeMs: config.tokens.refreshBeforeSeconds * 1000, minTtlMs: config.tokens.minTtlSeconds * 1000 };
  const budgets = new AccountBudgets({
    channel: config.budget.channelPerHour,
    watch_api: config.kinds.watchTokenPerHour,
    common: config.kinds.commonTokenPerHour,
    watch_url: config.kinds.watchUrlPerHour,
  });
  // The refresh core every token kind goes through: one single-flight, one gateway to PolyV.
  const flights = new SingleFlight({ clock, logger: logger.child({ module: 'single-flight' }), lockTtlMs: config.polyv.timeoutMs * 2 + 2000 });
  const gateway = new PolyvGateway({
    budget,
    budgets,
    store,
    clock,
    metrics,
    logger: logger.child({ module: 'polyv-gateway' }),
    rejectedChannelTtlSeconds: config.tokens.rejectedChannelTtlSeconds,
  });
  const warmChannels = new WarmChannels({ store, budget, budgets, scheduler: queue, clock, timing });
  const refresher = new ChannelRefresher({
    store,
    flights,
    gateway,
    polyv,
    warmChannels,
    clock,
    logger: logger.child({ module: 'channel-tokens' }),
    metrics,
    timing,
    expireSeconds: config.tokens.expireSeconds,
  });
  const reader = new ChannelTokenReader({
    store,
    refresher,
    clock,
    logger: logger.child({ module: 'channel-tokens' }),
    metrics,
    timing,
    localCache,
  });
  const service = new ChannelTokenService({ reader, refresher, warmChannels, timing });
  const kindStore = new KindTokenStore({ redis, keys, sealed: new SealedJson(cipher) });
  const kindDeps = { store: kindStore, polyv, gateway, flights, clock, metrics };
  const disposable = new DisposableTokenService({ polyv, gateway, clock, metrics, expireSeconds: config.tokens.expireSeconds });
  const viewerTokens = new ViewerTokenService({ ...kindDeps, minTtlSeconds: config.tokens.minTtlSeconds });
  const commonTokens = new CommonTokenService({
    ...kindDeps,
    minTtlSeconds: config.tokens.minTtlSeconds,
    ttlSeconds: config.kinds.commonTokenTtlSeconds,
  });
  const watchUrls = new WatchUrlService({
    ...kindDeps,
    logger: logger.child({ module: 'watch-urls' }),
    refills: queue,
    poolSize: config.kinds.watchUrlPool,
    poolMaxAgeSeconds: config.kinds.watchUrlPoolMaxAgeSeconds,
  });
  const worker =
    config.role === 'api'
      ? undefined
      : new RefreshWorker({
          connection: bullConnection,
          prefix: keys.bullPrefix(),
          concurrency: config.worker.concurrency,
          reconcileEveryMs: config.worker.reconcileIntervalSeconds * 1000,
          accounts,
          service,
          store,
          queue,
          clock,
          logger: logger.child({ module: 'worker' }),
          watchUrls: config.kinds.watchUrlPool > 0 ? watchUrls : undefined,
        });

  registerStateGauges(metrics, () =>
    takeStateSnapshot({
      accounts,
      store,
      budget,
      jobCounts: () => queue.queue.getJobCounts('waiting', 'delayed', 'active', 'failed', 'prioritized'),
      clock,
      timing,
      budgets,
      globalLimitPer10s: config.budget.globalPer10s,
      maxLabeledChannels: config.metrics.maxLabeledChannels,
    }),
  );

  const readiness = {
    async check(): Promise<Record<string, string>> {
      const checks: Record<string, string> = {};
      try {
        await Promise.race([
          pingRedis(redis),
          new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000).unref()),
        ]);
        checks['redis'] = 'ok';
      } catch (err) {
        checks['redis'] = `unreachable: ${(err as Error).message}`;
      }
      if (worker !== undefined) checks['worker'] = worker.running ? 'ok' : 'not running';
      return checks;
    },
  };

  // Per-consumer request limits, per replica (see consumer-rate-limiter.ts); none configured: no limiter at all.
  const rateLimiter = ConsumerRateLimiter.isActive(config.rateLimit, config.apiKeys.map((k) => k.rateLimit))
    ? new ConsumerRateLimiter({ defaults: config.rateLimit, clock, metrics })
    : undefined;
  const auth = new ApiKeyAuth(config.apiKeys, rateLimiter === undefined ? {} : { rateLimiter });
  const http = createHttpApp({
    ...(config.role === 'worker'
      ? {}
      : {
          channels: {
            service,
            disposable,
            viewerTokens,
            commonTokens,
            watchUrls,
            accounts,
            auth,
          },
        }),
    readiness,
    registry: metrics.registry,
    metrics,
    logger: logger.child({ module: 'http' }),
    serveMetrics: config.admin === undefined,
  });
  // The hot cached read is answered before express when it can be (see fast-token-route.ts).
  const listener =
    config.role === 'worker' ? http : withFastTokenRoute(http, { service, accounts, authenticate: auth.middleware(), authorize, metrics });
  const adminHttp =
    config.admin === undefined
      ? undefined
      : createAdminApp({ readiness, registry: metrics.registry, logger: logger.child({ module: 'admin-http' }) });

  let connecting: Promise<void> | undefined;
  const connect = () => (connecting ??= connectOrExplain(redis, redisTarget, probeKeys(config.redisPrefix)));
  let server: Server | undefined;
  let adminServer: Server | undefined;
  let stopping: Promise<void> | undefined;
  let adminUrl: string | undefined;

  return {
    config,
    http,
    service,
    accounts,
    store,
    budget,
    budgets,
    queue,
    metrics,
    worker,
    watchUrls,
    get adminUrl() {
      return adminUrl;
    },
    connect,
    async start() {
      await connect();
      const encryption = cipher.describe();
      if (encryption.decryptKeyIds.length > 0) {
        const how = encryption.currentKeyId === undefined ? 'written in plain text, encrypted ones still read' : 'encrypted (AES-256-GCM)';
        logger.info(encryption, `tokens at rest: ${how}`);
      }
      await localCache?.start();
      if (worker !== undefined) await worker.start();
      server = await new Promise<Server>((resolve, reject) => {
        const s = createHttpServer(listener, config.http, logger.child({ module: 'http' }));
        s.once('error', reject);
        s.listen(config.http.port, config.http.host, () => resolve(s));
      });
      const { port } = server.address() as AddressInfo;
      const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host;
      logger.info({ port, role: config.role }, 'broker listening');
      if (adminHttp !== undefined && config.admin !== undefined) {
        const admin = await listenAdmin(adminHttp, config.admin.port, config.admin.host, config.http, logger.child({ module: 'admin-http' }));
        adminServer = admin.server;
        adminUrl = admin.url;
        logger.info({ adminUrl: admin.url }, 'admin listener (metrics, health) listening');
      }
      return `http://${host}:${port}`;
    },
    stop() {
      // Idempotent: a second call (a signal during a test's own stop, say) waits for the first.
      stopping ??= stopAll();
      return stopping;
    },
  };

  async function stopAll(): Promise<void> {
    if (adminServer !== undefined) await closeAdmin(adminServer);
    if (server !== undefined) {
      const s = server;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      s.closeIdleConnections();
      const force = setTimeout(() => s.closeAllConnections(), config.shutdownTimeoutMs / 2);
      await closed;
      clearTimeout(force);
    }
    // Each step that needs Redis gets a share of the shutdown time: while Redis is unreachable, BullMQ's
    // close() and QUIT would wait for it forever.
    const graceMs = Math.max(250, Math.floor(config.shutdownTimeoutMs / 5));
    await worker?.stop(graceMs);
    await queue.close(graceMs);
    await closeOrDrop("BullMQ's Cluster connection", () => bullRedis.close(), () => bullRedis.drop(), graceMs, logger);
    await polyv.close();
    if (localCache !== undefined) await settlesWithin(localCache.stop(), graceMs);
    await closeOrDrop('the Redis commands connection', () => closeRedis(redis), () => redis.disconnect(), graceMs, logger);
    logger.info('broker stopped');
  }
}
