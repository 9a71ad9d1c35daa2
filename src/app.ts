import type { Express } from 'express';
import type { Dispatcher } from 'undici';
import type { Config } from './config/config.js';
import { ApiKeyAuth } from './http/api-key-auth.js';
import { createAdminApp } from './http/create-admin-app.js';
import { createHttpApp } from './http/create-http-app.js';
import { listen, type HttpListener } from './http/listen.js';
import { readinessCheck } from './http/readiness-check.js';
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
import { ChannelTokenService } from './service/channel-token-service.js';
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
import { RedisLock } from './store/redis-lock.js';
import { SealedJson } from './store/sealed-json.js';
import { TokenCipher } from './store/token-cipher.js';
import { TokenStore } from './store/token-store.js';

/** Longest wait for a dependency's answer in `/readyz`. */
const READINESS_TIMEOUT_MS = 1000;
/** A busy admin connection (a scrape) is ended this long into shutdown. */
const ADMIN_FORCE_CLOSE_MS = 2000;

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
  const service = new ChannelTokenService({
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
    lockTtlMs: config.polyv.timeoutMs * 2 + 2000,
    ...(localCache === undefined ? {} : { localCache }),
  });
  const gateway = new PolyvGateway({
    budget,
    store,
    metrics,
    logger: logger.child({ module: 'polyv-gateway' }),
    rejectedChannelTtlSeconds: config.tokens.rejectedChannelTtlSeconds,
  });
  const flights = new SingleFlight({ redis, lock: new RedisLock(redis), lockTtlMs: config.polyv.timeoutMs * 2 + 2000 });
  const sealed = new SealedJson(cipher);
  const kindDeps = { redis, sealed, keys, polyv, gateway, clock, metrics, minTtlSeconds: config.tokens.minTtlSeconds };
  const disposable = new DisposableTokenService({
    polyv,
    gateway,
    clock,
    metrics,
    expireSeconds: config.tokens.expireSeconds,
    perHour: (account) => account.budgets?.channelTokenPerHour ?? config.budget.channelPerHour,
  });
  const viewerTokens = new ViewerTokenService({ ...kindDeps, flights, perHour: config.kinds.watchTokenPerHour });
  const commonTokens = new CommonTokenService({
    ...kindDeps,
    flights,
    perHour: config.kinds.commonTokenPerHour,
    ttlSeconds: config.kinds.commonTokenTtlSeconds,
  });
  const watchUrls = new WatchUrlService({
    ...kindDeps,
    logger: logger.child({ module: 'watch-urls' }),
    refills: queue,
    perHour: config.kinds.watchUrlPerHour,
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
      queue,
      clock,
      timing: service.timing,
      channelBudgetPerHour: config.budget.channelPerHour,
      globalLimitPer10s: config.budget.globalPer10s,
      maxLabeledChannels: config.metrics.maxLabeledChannels,
    }),
  );

  const readiness = readinessCheck(
    {
      redis: () => pingRedis(redis).then(() => 'ok'),
      ...(worker === undefined ? {} : { worker: () => (worker.running ? 'ok' : 'not running') }),
    },
    READINESS_TIMEOUT_MS,
  );

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
    config.role === 'worker' ? http : withFastTokenRoute(http, { service, accounts, auth, metrics });
  const adminHttp =
    config.admin === undefined
      ? undefined
      : createAdminApp({ readiness, registry: metrics.registry, logger: logger.child({ module: 'admin-http' }) });

  let connecting: Promise<void> | undefined;
  const connect = () => (connecting ??= connectOrExplain(redis, redisTarget, probeKeys(config.redisPrefix)));
  let main: HttpListener | undefined;
  let admin: HttpListener | undefined;
  let stopping: Promise<void> | undefined;

  return {
    config,
    http,
    service,
    accounts,
    store,
    budget,
    queue,
    metrics,
    worker,
    watchUrls,
    get adminUrl() {
      return admin?.url;
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
      main = await listen(listener, config.http, config.http, logger.child({ module: 'http' }));
      logger.info({ url: main.url, role: config.role }, 'broker listening');
      if (adminHttp !== undefined && config.admin !== undefined) {
        admin = await listen(adminHttp, config.admin, config.http, logger.child({ module: 'admin-http' }));
        logger.info({ adminUrl: admin.url }, 'admin listener (metrics, health) listening');
      }
      return main.url;
    },
    stop() {
      // Idempotent: a second call (a signal during a test's own stop, say) waits for the first.
      stopping ??= stopAll();
      return stopping;
    },
  };

  async function stopAll(): Promise<void> {
    await admin?.close(ADMIN_FORCE_CLOSE_MS);
    await main?.close(config.shutdownTimeoutMs / 2);
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
