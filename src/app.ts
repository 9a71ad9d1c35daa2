import type { Express } from 'express';
import type { Dispatcher } from 'undici';
import type { AppContext } from './composition/app-context.js';
import { createHttp } from './composition/create-http.js';
import { createPolyvClient } from './composition/create-polyv-client.js';
import { createRefreshJobs, createRefreshWorker } from './composition/create-scheduler.js';
import { createServices, type Services } from './composition/create-services.js';
import { createStores, type Stores } from './composition/create-stores.js';
import { createStreams } from './composition/create-streams.js';
import type { Config } from './config/config.js';
import { systemClock, type Clock } from './lib/clock.js';
import { settlesWithin } from './lib/settle-within.js';
import { createLogger, type Logger } from './lib/logger.js';
import { BrokerMetrics } from './metrics/broker-metrics.js';
import { registerStateGauges } from './metrics/state-gauges.js';
import type { RefreshQueue } from './scheduler/refresh-queue.js';
import type { RefreshWorker } from './scheduler/refresh-worker.js';
import type { AccountBudgets } from './service/account-budgets.js';
import type { AccountRegistry } from './service/account-registry.js';
import type { ChannelTokenService } from './service/channel-token-service.js';
import type { ReadTracker } from './service/read-tracker.js';
import { takeStateSnapshot } from './service/state-snapshot.js';
import type { WarmCapacity } from './service/warm-capacity.js';
import type { WatchUrlService } from './service/watch-url-service.js';
import type { CallBudget } from './store/call-budget.js';
import { resolveRedisTarget } from './store/redis-connection.js';
import type { TokenStore } from './store/token-store.js';
import type { WarmSetStore } from './store/warm-set-store.js';

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
  readonly warmSet: WarmSetStore;
  readonly capacity: WarmCapacity;
  readonly reads: ReadTracker;
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
  /** Before stop(): `/readyz` answers 503 from now on while everything keeps serving (BROKER_DRAIN_SECONDS). */
  drain(): void;
  /** Stops in reverse order: HTTP, worker (in-flight refreshes finish), queue, PolyV pool, Redis. */
  stop(): Promise<void>;
}

/** Point-in-time gauges (warm channels, budgets, queue depth), computed at each scrape. */
function registerGauges({ config, clock, metrics }: AppContext, stores: Stores, queue: RefreshQueue, services: Services): void {
  registerStateGauges(metrics, () =>
    takeStateSnapshot({
      accounts: services.accounts,
      store: stores.store,
      warmSet: stores.warmSet,
      capacity: services.capacity,
      budget: stores.budget,
      jobCounts: () => queue.queue.getJobCounts('waiting', 'delayed', 'active', 'failed', 'prioritized'),
      clock,
      timing: services.channelTokens.timing,
      budgets: services.budgets,
      globalLimitPer10s: config.budget.globalPer10s,
      maxLabeledChannels: config.metrics.maxLabeledChannels,
    }),
  );
}

/**
 * The composition root: the only place that constructs clients, stores, workers and the HTTP server, in
 * steps (src/composition/): stores -> PolyV client -> refresh queue -> services -> worker -> token streams -> HTTP. Nothing
 * connects or listens until start(), which starts them in that order; stop() closes them in reverse.
 */
export function buildBrokerApp(options: BrokerAppOptions): BrokerApp {
  const { config } = options;
  const ctx: AppContext = {
    config,
    clock: options.clock ?? systemClock,
    logger: options.logger ?? createLogger(config.logLevel),
    metrics: options.metrics ?? new BrokerMetrics(),
  };
  const redisTarget = resolveRedisTarget(config, options.redisUrl);
  const stores = createStores(ctx, redisTarget);
  const polyv = createPolyvClient(ctx, options.polyvDispatcher);
  const jobs = createRefreshJobs(ctx, stores.keys, redisTarget);
  const services = createServices(ctx, { stores, polyv, queue: jobs.queue });
  const worker = createRefreshWorker(ctx, { jobs, stores, services });
  registerGauges(ctx, stores, jobs.queue, services);
  const streams = createStreams(ctx, { stores, services });
  const http = createHttp(ctx, { redis: stores.redis, services, worker, streams: streams?.streams });

  let stopping: Promise<void> | undefined;
  return {
    config,
    http: http.app,
    service: services.channelTokens,
    accounts: services.accounts,
    store: stores.store,
    warmSet: stores.warmSet,
    capacity: services.capacity,
    reads: services.reads,
    budget: stores.budget,
    budgets: services.budgets,
    queue: jobs.queue,
    metrics: ctx.metrics,
    worker,
    watchUrls: services.watchUrls,
    get adminUrl() {
      return http.adminUrl;
    },
    connect: () => stores.connect(),
    drain: () => http.drain(),
    async start() {
      await stores.start();
      services.reads.start();
      await streams?.start();
      await worker?.start();
      return http.start();
    },
    stop() {
      // Idempotent: a second call (a signal during a test's own stop, say) waits for the first.
      stopping ??= stopAll();
      return stopping;
    },
  };

  async function stopAll(): Promise<void> {
    // Open token streams end first (their clients reconnect elsewhere); otherwise closing would wait for them.
    streams?.drain();
    await http.close();
    // Each step that needs Redis gets a share of the shutdown time: while Redis is unreachable, BullMQ's
    // close() and QUIT would wait for it forever.
    const graceMs = Math.max(250, Math.floor(config.shutdownTimeoutMs / 5));
    await worker?.stop(graceMs);
    await jobs.close(graceMs);
    await polyv.close();
    await streams?.close(graceMs);
    // The reads of the last flush interval are written before Redis closes (or given up after graceMs).
    await settlesWithin(services.reads.stop(), graceMs);
    await stores.close(graceMs);
    ctx.logger.info('broker stopped');
  }
}
