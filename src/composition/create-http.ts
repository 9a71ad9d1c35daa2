import type { RequestListener } from 'node:http';
import type { Express } from 'express';
import { ApiKeyAuth } from '../http/api-key-auth.js';
import { ConsumerRateLimiter } from '../http/consumer-rate-limiter.js';
import { createAdminApp } from '../http/create-admin-app.js';
import { createHttpApp } from '../http/create-http-app.js';
import { withFastTokenRoute } from '../http/fast-token-route.js';
import { listen, type HttpListener } from '../http/listen.js';
import { readinessCheck } from '../http/readiness-check.js';
import type { ReadinessCheck } from '../http/routes/ops-routes.js';
import type { TokenStreams } from '../http/token-streams.js';
import type { RefreshWorker } from '../scheduler/refresh-worker.js';
import { pingRedis } from '../store/redis-connection.js';
import type { RedisClient } from '../store/redis-scripts.js';
import type { AppContext } from './app-context.js';
import type { Services } from './create-services.js';

/** Longest wait for a dependency's answer in `/readyz`. */
const READINESS_TIMEOUT_MS = 1000;
/** A busy admin connection (a scrape) is ended this long into shutdown. */
const ADMIN_FORCE_CLOSE_MS = 2000;

/** The broker's listeners, built but not listening. */
export interface HttpParts {
  /** The express app of the main listener (the fast token route sits in front of it). */
  readonly app: Express;
  /** The admin listener's base URL once started; undefined without BROKER_ADMIN_PORT. */
  readonly adminUrl: string | undefined;
  /** Listens: the main listener, then the admin one; resolves with the main listener's base URL. */
  start(): Promise<string>;
  /**
   * Draining before shutdown: from now on `/readyz` answers 503 (`shutdown: draining`) on both listeners, so
   * load balancers stop sending, while every request is still served; its response closes the connection, so
   * keep-alive clients reconnect elsewhere instead of reusing a connection about to close.
   */
  drain(): void;
  /** Closes the admin listener, then the main one (busy connections ended after half the shutdown time). */
  close(): Promise<void>;
}

/**
 * `/readyz`: Redis answers (within READINESS_TIMEOUT_MS), the worker runs where there is one, and the broker is
 * not draining for a shutdown.
 */
function createReadiness(redis: RedisClient, worker: RefreshWorker | undefined, draining: () => boolean): ReadinessCheck {
  return readinessCheck(
    {
      redis: () => pingRedis(redis).then(() => 'ok'),
      ...(worker === undefined ? {} : { worker: () => (worker.running ? 'ok' : 'not running') }),
      shutdown: () => (draining() ? 'draining' : 'ok'),
    },
    READINESS_TIMEOUT_MS,
  );
}

/** API key checks, with per-consumer rate limits (per replica, see consumer-rate-limiter.ts) when any is configured. */
function createAuth({ config, clock, metrics }: AppContext): ApiKeyAuth {
  const limited = ConsumerRateLimiter.isActive(config.rateLimit, config.apiKeys.map((k) => k.rateLimit));
  const rateLimiter = limited ? new ConsumerRateLimiter({ defaults: config.rateLimit, clock, metrics }) : undefined;
  return new ApiKeyAuth(config.apiKeys, {
    upstreamPerHour: config.budget.consumerUpstreamPerHour,
    ...(rateLimiter === undefined ? {} : { rateLimiter }),
  });
}

/**
 * Step 6: the main listener (express app with the token API, unless the replica is a worker only; the fast
 * token route in front) and the admin listener (BROKER_ADMIN_PORT), both answering `/readyz` alike.
 */
export function createHttp(
  ctx: AppContext,
  deps: { redis: RedisClient; services: Services; worker: RefreshWorker | undefined; streams?: TokenStreams | undefined },
): HttpParts {
  const { config, logger, metrics } = ctx;
  const { accounts, channelTokens, disposable, viewerTokens, commonTokens, watchUrls } = deps.services;
  let draining = false;
  const readiness = createReadiness(deps.redis, deps.worker, () => draining);
  const serving = config.role !== 'worker';
  const auth = createAuth(ctx);
  const app = createHttpApp({
    ...(serving ? { channels: { service: channelTokens, disposable, viewerTokens, commonTokens, watchUrls, accounts, auth, streams: deps.streams } } : {}),
    readiness,
    registry: metrics.registry,
    metrics,
    logger: logger.child({ module: 'http' }),
    accessLog: { logger: logger.child({ module: 'access' }), hitSample: config.accessLogHitSample },
    serveMetrics: config.admin === undefined,
  });
  // The hot cached read is answered before express when it can be (see fast-token-route.ts).
  const routes: RequestListener = serving
    ? withFastTokenRoute(app, {
        service: channelTokens,
        accounts,
        auth,
        metrics,
        accessLog: { logger: logger.child({ module: 'access' }), hitSample: config.accessLogHitSample },
      })
    : app;
  const listener: RequestListener = (req, res) => {
    if (draining) res.setHeader('Connection', 'close');
    routes(req, res);
  };
  const admin = config.admin;
  const adminLogger = logger.child({ module: 'admin-http' });
  const adminApp = admin === undefined ? undefined : createAdminApp({ readiness, registry: metrics.registry, logger: adminLogger });

  let main: HttpListener | undefined;
  let adminListener: HttpListener | undefined;
  return {
    app,
    get adminUrl() {
      return adminListener?.url;
    },
    async start() {
      main = await listen(listener, config.http, config.http, logger.child({ module: 'http' }));
      logger.info({ url: main.url, role: config.role }, 'broker listening');
      if (adminApp !== undefined && admin !== undefined) {
        adminListener = await listen(adminApp, admin, config.http, adminLogger);
        logger.info({ adminUrl: adminListener.url }, 'admin listener (metrics, health) listening');
      }
      return main.url;
    },
    drain() {
      draining = true;
    },
    async close() {
      await adminListener?.close(ADMIN_FORCE_CLOSE_MS);
      await main?.close(config.shutdownTimeoutMs / 2);
    },
  };
}
