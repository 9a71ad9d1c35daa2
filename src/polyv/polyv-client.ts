import { Agent, request, type Dispatcher } from 'undici';
import type { z } from 'zod';
import { UpstreamError } from '../errors/broker-error.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import type { PolyvEndpoint } from '../domain/token-kinds.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import { classifyEnvelopeError } from './classify-error.js';
import {
  channelTokenDataSchema,
  commonTokenDataSchema,
  envelopeSchema,
  watchApiTokenDataSchema,
  watchUrlDataSchema,
  type ChannelTokenData,
  type CommonTokenData,
  type WatchApiTokenData,
} from './polyv-schemas.js';
import { signParams, type ParamValue } from './sign.js';

export const POLYV_PATHS: Readonly<Record<PolyvEndpoint, string>> = {
  'get-channel-token': '/live/v3/common/token/get-channel-token',
  'get-watch-api-token': '/live/v3/channel/watch/get-watch-api-token',
  'common-get-token': '/live/v3/channel/common/get-token',
  'get-token-watch-url': '/live/v3/channel/watch/get-token-watch-url',
};

export interface PolyvCredentials {
  readonly appId: string;
  readonly appSecret: string;
}

export interface PolyvClientOptions {
  baseUrl: string;
  /** Total time for one call: connect, send, headers and body. */
  timeoutMs: number;
  connectTimeoutMs: number;
  clock: Clock;
  logger: Logger;
  metrics: BrokerMetrics;
  /** Injected for tests (e.g. undici MockAgent); by default a keep-alive pool owned by the client. */
  dispatcher?: Dispatcher;
  /** Most sockets kept open to PolyV. */
  connections?: number;
}

export interface ChannelTokenRequest {
  channelId: string;
  expireSeconds?: number;
  disposable?: boolean;
}

export interface WatchApiTokenRequest {
  channelId: string;
  viewerId: string;
  nickname?: string | undefined;
  avatar?: string | undefined;
  openid?: string | undefined;
  actor?: string | undefined;
}

/**
 * The only code that talks to PolyV. One method call is exactly one HTTP request, signed fresh (new
 * timestamp) and bounded by hard timeouts. Retries and budgets belong to the callers.
 */
export class PolyvClient {
  private readonly options: PolyvClientOptions;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;

  constructor(options: PolyvClientOptions) {
    this.options = options;
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher =
      options.dispatcher ??
      new Agent({
        connect: { timeout: options.connectTimeoutMs },
        connections: options.connections ?? 64,
        keepAliveTimeout: 10_000,
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
      });
  }

  async getChannelToken(account: PolyvCredentials, req: ChannelTokenRequest): Promise<ChannelTokenData> {
    return this.call('get-channel-token', account, channelTokenDataSchema, {
      channelId: req.channelId,
      expireSeconds: req.expireSeconds,
      disposable: req.disposable === true ? 'true' : undefined,
    });
  }

  async getWatchApiToken(account: PolyvCredentials, req: WatchApiTokenRequest): Promise<WatchApiTokenData> {
    return this.call('get-watch-api-token', account, watchApiTokenDataSchema, { ...req });
  }

  async getCommonToken(account: PolyvCredentials, channelId: string): Promise<CommonTokenData> {
    return this.call('common-get-token', account, commonTokenDataSchema, { channelId });
  }

  async getTokenWatchUrl(account: PolyvCredentials, channelId: string): Promise<string> {
    return this.call('get-token-watch-url', account, watchUrlDataSchema, { channelId });
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private async call<T>(
    endpoint: PolyvEndpoint,
    account: PolyvCredentials,
    schema: z.ZodType<T>,
    params: Record<string, ParamValue>,
  ): Promise<T> {
    const { clock, metrics, logger, baseUrl, timeoutMs } = this.options;
    const started = performance.now();
    const channelId = typeof params['channelId'] === 'string' ? params['channelId'] : undefined;
    let outcome: 'success' | 'error' = 'error';
    let errorClass = 'none';
    try {
      const body = new URLSearchParams(
        signParams({ ...params, appId: account.appId, timestamp: clock.now() }, account.appSecret),
      ).toString();
      const data = await this.send(endpoint, `${baseUrl}${POLYV_PATHS[endpoint]}`, body, timeoutMs);
      const parsed = schema.safeParse(data);
      if (!parsed.success) {
        throw new UpstreamError('upstream_bad_response', `PolyV ${endpoint} returned data of an unexpected shape`);
      }
      outcome = 'success';
      return parsed.data;
    } catch (err) {
      errorClass = err instanceof UpstreamError ? err.code : 'internal_error';
      throw err;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      metrics.polyvCalls.inc({ endpoint, outcome, error_class: errorClass });
      metrics.polyvCallDuration.observe({ endpoint, outcome }, seconds);
      const line = { endpoint, channelId, outcome, errorClass, durationMs: Math.round(seconds * 1000) };
      if (outcome === 'success') logger.info(line, 'polyv call');
      else if (errorClass === 'upstream_auth_failed') logger.error(line, 'polyv call rejected the credentials');
      else logger.warn(line, 'polyv call failed');
    }
  }

  /** One POST; returns the envelope's `data` on success, throws a classified UpstreamError otherwise. */
  private async send(endpoint: PolyvEndpoint, url: string, body: string, timeoutMs: number): Promise<unknown> {
    let statusCode: number;
    let text: string;
    try {
      const res = await request(url, {
        method: 'POST',
        dispatcher: this.dispatcher,
        headers: { // As PolyV's Java SDK sends it: the signature is computed over UTF-8 bytes (a Chinese nickname, say).
        'content-type': 'application/x-www-form-urlencoded; charset=UTF-8', accept: 'application/json' },
        body,
        signal: AbortSignal.timeout(timeoutMs),
      });
      statusCode = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      const name = err instanceof Error ? err.name : 'Error';
      const timedOut = /Timeout|Abort/i.test(name) || (err instanceof Error && /timeout/i.test(err.message));
      throw new UpstreamError(
        'upstream_unavailable',
        timedOut
          ? `PolyV ${endpoint} did not answer within ${timeoutMs} ms`
          : `PolyV ${endpoint} could not be reached (${name})`,
        { cause: err },
      );
    }

    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new UpstreamError(
        statusCode >= 500 ? 'upstream_unavailable' : 'upstream_bad_response',
        `PolyV ${endpoint} answered HTTP ${statusCode} without a JSON body`,
        { upstreamCode: statusCode },
      );
    }
    const envelope = envelopeSchema.safeParse(json);
    if (!envelope.success) {
      throw new UpstreamError(
        statusCode >= 500 ? 'upstream_unavailable' : 'upstream_bad_response',
        `PolyV ${endpoint} answered HTTP ${statusCode} without its response envelope`,
        { upstreamCode: statusCode },
      );
    }
    const { code, status, message, data } = envelope.data;
    if (code === 200 && (status === undefined || status === null || status === 'success')) return data;
    throw classifyEnvelopeError(code, message);
  }
}
