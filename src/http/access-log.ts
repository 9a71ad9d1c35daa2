import type { RequestHandler } from 'express';
import type { Logger } from '../lib/logger.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';

export interface AccessLogOptions {
  logger: Logger;
  /** Fraction of plain cached hits logged (BROKER_ACCESS_LOG_HIT_SAMPLE); every other request is. */
  hitSample: number;
}

/** One access log line: who asked what, and how it ended; never a key or a token. */
export interface AccessLine {
  consumer: string;
  route: string;
  channelId: string | undefined;
  status: number;
  outcome: string;
  durationMs: number;
}

const CHANNEL_IN_PATH = /\/channels\/(\d{1,20})(?:\/|$|\?)/;

/** The channel ID of a request path, if any (the path is the route's, never a query string). */
export function channelOfPath(path: string): string | undefined {
  return CHANNEL_IN_PATH.exec(path)?.[1];
}

/** The route of a path, its parameters named: `/v1/accounts/{account}/channels/{channelId}/token`. */
export function routeOf(path: string): string {
  return path.replace(/\/accounts\/[^/]+/, '/accounts/{account}').replace(/\/channels\/\d{1,20}/, '/channels/{channelId}');
}

/** Whether this answer is logged: always unless it is a plain cached hit, then with the hit sample. */
export function shouldLog(outcome: string, hitSample: number): boolean {
  return outcome !== 'hit' || (hitSample > 0 && Math.random() < hitSample);
}

/**
 * Counts every `/v1` request in `polyv_broker_requests_total{consumer,kind,outcome}` and writes one JSON access
 * line for each that is not a plain cached hit (those are sampled). Routes leave the token kind
 * (`res.locals.kind`, set by authorize) and the outcome (`res.locals.outcome`: hit, miss, refresh,
 * report_too_soon, or an error code) for it; the consumer is the authenticated one, `-` before that.
 */
export function accessLog(metrics: BrokerMetrics, options: AccessLogOptions): RequestHandler {
  return (req, res, next) => {
    const started = performance.now();
    res.once('finish', () => {
      const path = req.originalUrl.split('?')[0] ?? '';
      const consumer = (res.locals['consumer'] as { name?: string } | undefined)?.name ?? '-';
      const kind = (res.locals['kind'] as string | undefined) ?? '-';
      const outcome = (res.locals['outcome'] as string | undefined) ?? (res.statusCode < 400 ? 'ok' : 'error');
      metrics.requests.inc({ consumer, kind, outcome });
      if (!shouldLog(outcome, options.hitSample)) return;
      const line: AccessLine = {
        consumer,
        route: `${req.method} ${routeOf(path)}`,
        channelId: channelOfPath(path),
        status: res.statusCode,
        outcome,
        durationMs: Math.round((performance.now() - started) * 1000) / 1000,
      };
      options.logger.info(line, 'request');
    });
    next();
  };
}
