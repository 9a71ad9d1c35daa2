import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { Dispatcher } from 'undici';
import type { Config } from './config/config.js';
import { ApiKeyAuth } from './http/api-key-auth.js';
import { createHttpApp } from './http/create-http-app.js';
import { systemClock, type Clock } from './lib/clock.js';
import { createLogger, type Logger } from './lib/logger.js';
import { BrokerMetrics } from './metrics/broker-metrics.js';
import { registerStateGauges } from './metrics/state-gauges.js';
import { PolyvClient } from './polyv/polyv-client.js';
import { RefreshQueue } from './scheduler/refresh-queue.js';
import { RefreshWorker } from './scheduler/refresh-worker.js';
import { AccountRegistry } from './service/account-registry.js';
import { ChannelTokenService } from './service/channel-token-service.js';
import { takeStateSnapshot } from './service/state-snapshot.js';
import { CallBudget } from './store/call-budget.js';
import { createRedis, redisOptions } from './store/redis-connection.js';
import { RedisKeys } from './store/redis-keys.js';
import { TokenStore } from './store/token-store.js';

export interface BrokerAppOptions {
  config: Config;
  /** The Redis to use; the caller resolves the embedded server when REDIS_URL is unset. */
  redisUrl: string;
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
  /** Listens on the configured port (0 = any free port); resolves with the base URL. */
  start(): Promise<string>;
  /** Stops in reverse order: HTTP, worker (in-flight refreshes finish), queue, PolyV pool, Redis. */
  stop(): Promise<void>;
}

/** The composition root: the only place that constructs clients, stores, workers and the HTTP server. */
export function buildBrokerApp(options: BrokerAppOptions): BrokerApp {
  const { config, redisUrl } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger(config.logLevel);
  const metrics = options.metrics ?? new BrokerMetrics();
  const keys = new RedisKeys(config.redisPrefix);
  const redis = createRedis(redisUrl, 'commands', logger.child({ module: 'redis' }));
  const bullConnection = redisOptions(redisUrl, 'bullmq');
  const accounts = new AccountRegistry(config.accounts);

  const store = new TokenStore({ redis, keys });
  const budget = new CallBudget({ redis, keys, clock, globalPer10s: config.budget.globalPer10s });
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

  const readiness = {
    async check(): Promise<Record<string, string>> {
      const checks: Record<string, string> = {};
      try {
        await Promise.race([
          redis.ping(),
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

  const http = createHttpApp({
    ...(config.role === 'worker'
      ? {}
      : { channels: { service, accounts, auth: new ApiKeyAuth(config.apiKeys) } }),
    readiness,
    registry: metrics.registry,
    metrics,
    logger: logger.child({ module: 'http' }),
  });

  let server: Server | undefined;

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
    async start() {
      await redis.connect();
      if (worker !== undefined) await worker.start();
      server = await new Promise<Server>((resolve, reject) => {
        const s = http.listen(config.http.port, config.http.host, () => resolve(s));
        s.once('error', reject);
      });
      server.keepAliveTimeout = 65_000;
      server.headersTimeout = 10_000;
      server.requestTimeout = 30_000;
      const { port } = server.address() as AddressInfo;
      const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host;
      logger.info({ port, role: config.role }, 'broker listening');
      return `http://${host}:${port}`;
    },
    async stop() {
      if (server !== undefined) {
        const s = server;
        const closed = new Promise<void>((resolve) => s.close(() => resolve()));
        s.closeIdleConnections();
        const force = setTimeout(() => s.closeAllConnections(), config.shutdownTimeoutMs / 2);
        await closed;
        clearTimeout(force);
      }
      await worker?.stop();
      await queue.close();
      await polyv.close();
      await redis.quit().catch(() => redis.disconnect());
      logger.info('broker stopped');
    },
  };
}
