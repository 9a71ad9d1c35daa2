import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/logger.js';
import { createHttpServer, type SlowClientLimits } from './create-http-server.js';
import { errorMiddleware, notFound } from './error-middleware.js';
import { opsRoutes, type ReadinessCheck } from './routes/ops-routes.js';

/**
 * The admin listener (`BROKER_ADMIN_PORT`): `/metrics`, `/healthz` and `/readyz`, nothing else, so metrics
 * can be kept off the network consumers reach. Built without listening, like the main app.
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

/**
 * Listens on host:port, with the same limits against slow and oversized requests as the main listener, and
 * resolves with the server and a base URL a local client can use.
 */
export async function listenAdmin(
  app: Express,
  port: number,
  host: string,
  limits: SlowClientLimits,
  logger: Logger,
): Promise<{ server: Server; url: string }> {
  const server = await new Promise<Server>((resolve, reject) => {
    const s = createHttpServer(app, limits, logger);
    s.once('error', reject);
    s.listen(port, host, () => {
      s.off('error', reject);
      resolve(s);
    });
  });
  const { port: bound } = server.address() as AddressInfo;
  const local = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return { server, url: `http://${local}:${bound}` };
}

/** Stops accepting connections and ends idle ones; resolves when the server is closed. */
export async function closeAdmin(server: Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const force = setTimeout(() => server.closeAllConnections(), 2000);
  force.unref();
  await closed;
  clearTimeout(force);
}
