import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/logger.js';
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

/** Listens on host:port and resolves with the server and a base URL a local client can use. */
export async function listenAdmin(app: Express, port: number, host: string): Promise<{ server: Server; url: string }> {
  const server = await new Promise<Server>((resolve, reject) => {
    // express 5 hands a listen error (EADDRINUSE) to this callback
    const s = app.listen(port, host, (err?: Error) => (err === undefined ? resolve(s) : reject(err)));
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
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
