import express, { type Express } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/logger.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { AccountRegistry } from '../service/account-registry.js';
import type { ChannelTokenService } from '../service/channel-token-service.js';
import { ApiKeyAuth } from './api-key-auth.js';
import { errorMiddleware, notFound } from './error-middleware.js';
import { channelRoutes } from './routes/channel-routes.js';
import { opsRoutes, type ReadinessCheck } from './routes/ops-routes.js';

/** Largest JSON body accepted; anything larger is 413 before it is parsed. */
export const MAX_BODY_BYTES = 16 * 1024;

export interface HttpAppDeps {
  /** Absent on a worker-only replica: it serves health and metrics only. */
  channels?: { service: ChannelTokenService; accounts: AccountRegistry; auth: ApiKeyAuth };
  readiness: ReadinessCheck;
  registry: Registry;
  metrics: BrokerMetrics;
  logger: Logger;
}

/** Builds the express app without listening (the composition root owns the server). */
export function createHttpApp(deps: HttpAppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  app.use(opsRoutes({ readiness: deps.readiness, registry: deps.registry }));

  if (deps.channels !== undefined) {
    const { service, accounts, auth } = deps.channels;
    const v1 = express.Router();
    v1.use(auth.middleware());
    v1.use(express.json({ limit: MAX_BODY_BYTES, strict: true }));
    const routes = channelRoutes({ service, accounts, metrics: deps.metrics });
    v1.use('/channels', routes);
    v1.use('/accounts/:account/channels', routes);
    app.use('/v1', v1);
  }

  app.use(notFound);
  app.use(errorMiddleware(deps.logger));
  return app;
}
