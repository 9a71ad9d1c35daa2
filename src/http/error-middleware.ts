import type { ErrorRequestHandler, RequestHandler, Response } from 'express';
import { BrokerError } from '../errors/broker-error.js';
import type { Logger } from '../lib/logger.js';

/** The one error body shape: `{"error": {"code", "message"}}`. */
export function sendError(res: Response, err: BrokerError): void {
  res.locals['outcome'] = err.code;
  if (err.status === 503 || err.status === 429) {
    res.setHeader('Retry-After', String(Math.max(1, Math.ceil((err.retryAfterMs ?? 1000) / 1000))));
  }
  res.status(err.status).json({ error: { code: err.code, message: err.message } });
}

/** Unknown routes: 404 in the same JSON shape as every other error. */
export const notFound: RequestHandler = (req, _res, next) => {
  next(new BrokerError('not_found', `no route for ${req.method} ${req.path}`));
};

interface BodyParserError {
  type?: string;
  status?: number;
}

function toBrokerError(err: unknown): BrokerError | undefined {
  if (err instanceof BrokerError) return err;
  const type = typeof err === 'object' && err !== null ? (err as BodyParserError).type : undefined;
  if (type === 'entity.too.large') return new BrokerError('payload_too_large', 'the request body is too large');
  if (type === 'entity.parse.failed') return new BrokerError('invalid_json', 'the request body is not valid JSON');
  if (type === 'encoding.unsupported' || type === 'charset.unsupported') {
    return new BrokerError('unsupported_media_type', 'the request body encoding is not supported');
  }
  if (type !== undefined && typeof (err as BodyParserError).status === 'number' && (err as BodyParserError).status! < 500) {
    return new BrokerError('invalid_request', 'the request body could not be read');
  }
  // The router could not percent-decode a path segment (`/v1/channels/%zz/token`): the client's fault, not a 500.
  if (err instanceof URIError) return new BrokerError('invalid_request', 'the request path is not valid percent-encoding');
  return undefined;
}

/** Maps every error to its JSON body and status; only 5xx that are not expected upstream states are logged as errors. */
export function errorMiddleware(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const known = toBrokerError(err);
    if (known !== undefined) {
      if (known.status >= 500) logger.warn({ code: known.code, method: req.method, path: req.path }, known.message);
      sendError(res, known);
      return;
    }
    logger.error({ err, method: req.method, path: req.path }, 'unhandled error in request');
    sendError(res, new BrokerError('internal_error', 'internal error'));
  };
}
