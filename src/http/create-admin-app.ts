import express, { type Express } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/logger.js';
import { errorMiddleware, notFound } from './error-middleware.js';
import { opsRoutes, type ReadinessCheck } from './routes/ops-routes.js';

/**
 * The admin listener (`BROKER_ADMIN_PORT`): `/metrics`, `/healthz` and `/readyz`, nothing else, so metrics
 * can be kept off the network consumers reach. Built without listening, like the main app (listen.ts binds both).
 */
export function createAdminApp(deps: { readiness: ReadinessCheck; registry: Registry; logger: Logger }): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(opsRoutes({ readiness: deps.readiness, registry: deps.registry, metrics: true }));
  app.use(notFound);
  app.use(errorMiddleware(deps.logger));
  return app;
}
