import express, { type Express, type RequestHandler } from 'express';
import { BrokerError } from '../errors/broker-error.js';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/logger.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { AccountRegistry } from '../service/account-registry.js';
import type { ChannelTokenService } from '../service/channel-token-service.js';
import { accessLog, type AccessLogOptions } from './access-log.js';
import { ApiKeyAuth } from './api-key-auth.js';
import { buildOpenApiDocument } from './openapi.js';
import { errorMiddleware, notFound } from './error-middleware.js';
import { channelRoutes } from './routes/channel-routes.js';
import { tokenKindRoutes } from './routes/token-kind-routes.js';
import { tokenStreamRoutes } from './routes/token-stream-routes.js';
import type { TokenStreams } from './token-streams.js';
import type { CommonTokenService } from '../service/common-token-service.js';
import type { DisposableTokenService } from '../service/disposable-token-service.js';
import type { ViewerTokenService } from '../service/viewer-token-service.js';
import type { WatchUrlService } from '../service/watch-url-service.js';
import { opsRoutes, type ReadinessCheck } from './routes/ops-routes.js';

/** Largest JSON body accepted; anything larger is 413 before it is parsed. */
export const MAX_BODY_BYTES = 16 * 1024;

/**
 * A declared body (Content-Length) over MAX_BODY_BYTES is 413 whatever its Content-Type, before any of it is
 * read; the JSON parser enforces the same limit on chunked and compressed bodies as it reads them.
 */
const declaredBodyLimit: RequestHandler = (req, _res, next) => {
  const declared = Number(req.headers['content-length'] ?? 0);
  next(declared > MAX_BODY_BYTES ? new BrokerError('payload_too_large', `the request body is larger than ${MAX_BODY_BYTES} bytes`) : undefined);
};

export interface HttpAppDeps {
  /** Absent on a worker-only replica: it serves health and metrics only. */
  channels?: {
    service: ChannelTokenService;
    disposable: DisposableTokenService;
    viewerTokens: ViewerTokenService;
    commonTokens: CommonTokenService;
    watchUrls: WatchUrlService;
    accounts: AccountRegistry;
    auth: ApiKeyAuth;
    /** The token streams (Server-Sent Events); absent when BROKER_STREAM_MAX_CLIENTS is 0. */
    streams?: TokenStreams | undefined;
  };
  readiness: ReadinessCheck;
  registry: Registry;
  metrics: BrokerMetrics;
  logger: Logger;
  /** false when BROKER_ADMIN_PORT is set: /metrics is then served on the admin port only. */
  serveMetrics?: boolean;
  /** Where `/v1` requests are logged (absent: a silent log, requests still counted). */
  accessLog?: AccessLogOptions;
}

/** Builds the express app without listening (the composition root owns the server). */
export function createHttpApp(deps: HttpAppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  app.use(opsRoutes({ readiness: deps.readiness, registry: deps.registry, metrics: deps.serveMetrics !== false }));
  if (deps.channels !== undefined) {
    // The API's description, for generating clients (no key needed: it holds no secret).
    const openapi = JSON.stringify(buildOpenApiDocument());
    app.get('/openapi.json', (_req, res) => {
      res.type('application/json').send(openapi);
    });
  }

  if (deps.channels !== undefined) {
    const { service, disposable, viewerTokens, commonTokens, watchUrls, accounts, auth } = deps.channels;
    const v1 = express.Router();
    v1.use(accessLog(deps.metrics, deps.accessLog ?? { logger: deps.logger, hitSample: 0 }));
    v1.use(auth.middleware());
    v1.use(declaredBodyLimit);
    v1.use(express.json({ limit: MAX_BODY_BYTES, strict: true }));
    const routes = channelRoutes({ service, disposable, accounts, metrics: deps.metrics });
    const kinds = tokenKindRoutes({ accounts, metrics: deps.metrics, viewerTokens, commonTokens, watchUrls });
    v1.use('/channels', routes, kinds);
    v1.use('/accounts/:account/channels', routes, kinds);
    if (deps.channels.streams !== undefined) v1.use(tokenStreamRoutes({ accounts, streams: deps.channels.streams }));
    app.use('/v1', v1);
  }

  app.use(notFound);
  app.use(errorMiddleware(deps.logger));
  return app;
}
