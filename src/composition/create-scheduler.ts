import { closeOrDrop } from '../lib/settle-within.js';
import { RefreshQueue } from '../scheduler/refresh-queue.js';
import { RefreshWorker } from '../scheduler/refresh-worker.js';
import { createBullmqRedis, type BullmqRedis, type RedisTarget } from '../store/redis-connection.js';
import type { RedisKeys } from '../store/redis-keys.js';
import type { AppContext } from './app-context.js';
import type { Services } from './create-services.js';
import type { Stores } from './create-stores.js';

/** The refresh queue and BullMQ's connection, which the worker shares. */
export interface RefreshJobs {
  readonly connection: BullmqRedis['connection'];
  readonly queue: RefreshQueue;
  /** Closes the queue, then the BullMQ connection the broker owns (a Cluster's); each gets `graceMs`. */
  close(graceMs: number): Promise<void>;
}

/**
 * Step 3: the refresh queue, before the services that schedule refreshes on it. On a Cluster, BullMQ gets a
 * Cluster instance the broker owns (closed here); otherwise connection options, and BullMQ owns its connections.
 */
export function createRefreshJobs({ logger }: AppContext, keys: RedisKeys, target: RedisTarget): RefreshJobs {
  const bullRedis = createBullmqRedis(target, logger.child({ module: 'redis' }));
  const queue = new RefreshQueue({ connection: bullRedis.connection, prefix: keys.bullPrefix(), logger });
  return {
    connection: bullRedis.connection,
    queue,
    async close(graceMs) {
      await queue.close(graceMs);
      await closeOrDrop("BullMQ's Cluster connection", () => bullRedis.close(), () => bullRedis.drop(), graceMs, logger);
    },
  };
}

/** Step 5: the refresh worker, after the services it runs; none on an `api` replica. */
export function createRefreshWorker(
  { config, clock, logger }: AppContext,
  deps: { jobs: RefreshJobs; stores: Stores; services: Services },
): RefreshWorker | undefined {
  if (config.role === 'api') return undefined;
  const { jobs, stores, services } = deps;
  return new RefreshWorker({
    connection: jobs.connection,
    prefix: stores.keys.bullPrefix(),
    concurrency: config.worker.concurrency,
    reconcileEveryMs: config.worker.reconcileIntervalSeconds * 1000,
    accounts: services.accounts,
    service: services.channelTokens,
    store: stores.store,
    warmSet: stores.warmSet,
    queue: jobs.queue,
    clock,
    logger: logger.child({ module: 'worker' }),
    watchUrls: config.kinds.watchUrlPool > 0 ? services.watchUrls : undefined,
  });
}
