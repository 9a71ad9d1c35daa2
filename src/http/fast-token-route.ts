import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { PolyvAccount } from '../config/config.js';
import { BrokerError } from '../errors/broker-error.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { AccountRegistry } from '../service/account-registry.js';
import type { ChannelTokenService } from '../service/channel-token-service.js';
import type { ApiKeyAuth } from './api-key-auth.js';
import { channelOfPath, routeOf, shouldLog, type AccessLine, type AccessLogOptions } from './access-log.js';
import { mayRead } from './authorize.js';

export interface FastTokenRouteDeps {
  service: ChannelTokenService;
  accounts: AccountRegistry;
  /** The instance whose `middleware()` the `/v1` router runs first, so both paths share keys and rate buckets. */
  auth: Pick<ApiKeyAuth, 'authenticateOn' | 'admit'>;
  metrics: BrokerMetrics;
  /** Hits are logged only with this sample (BROKER_ACCESS_LOG_HIT_SAMPLE); absent: none. */
  accessLog?: AccessLogOptions | undefined;
}

/** Most tokens whose serialized answer is kept (one per channel in the local cache is the usual need). */
const MAX_PRESERIALIZED = 10_000;

/** The canonical spellings of the hot read; any other spelling (case, encoding, query) takes the express route. */
const DEFAULT_ACCOUNT_PATH = /^\/v1\/channels\/(\d{1,20})\/token$/;
const NAMED_ACCOUNT_PATH = /^\/v1\/accounts\/([A-Za-z0-9_.-]{1,64})\/channels\/(\d{1,20})\/token$/;

/**
 * Puts the hot read, `GET /v1/channels/{id}/token` (and its per-account twin), in front of the express app.
 *
 * It answers only the happy case: a canonical URL, no request body, the request passes the same
 * authentication, rate limit (`ApiKeyAuth.authenticate` and `admit`) and scope check (`mayRead`) as the
 * express route, and the in-process cache holds a servable token. The answer is byte for byte the express
 * route's (same body, same headers) and counts the same metrics.
 * Everything else, including every error and every cache miss, is handed to the express app untouched,
 * which runs its middleware from the start: there is one code path for auth and errors, and a second,
 * shorter one only for success. Nothing of express runs here, on a raw Node response.
 */
export function withFastTokenRoute(app: RequestListener, deps: FastTokenRouteDeps): RequestListener {
  const { service, accounts, auth } = deps;
  const hitDuration = deps.metrics.serveDuration.labels({ kind: 'channel', outcome: 'hit' });
  // One counter child per consumer, looked up once: a hit costs a Map lookup and an increment.
  const hitCounters = new Map<string, { inc(): void }>();
  const hitCounter = (consumer: string) => {
    let counter = hitCounters.get(consumer);
    if (counter === undefined) {
      counter = deps.metrics.requests.labels({ consumer, kind: 'channel', outcome: 'hit' });
      hitCounters.set(consumer, counter);
    }
    return counter;
  };
  const hitSample = deps.accessLog?.hitSample ?? 0;
  // Each token's answer is serialized once (body and headers), not per request; bounded, emptied when full.
  const answers = new Map<string, { body: string; headers: string[]; expireTime: number }>();
  const answerFor = (served: { channelId: string; channelToken: string; expireTime: number }) => {
    const known = answers.get(served.channelToken);
    if (known !== undefined && known.expireTime === served.expireTime) return known;
    if (answers.size >= MAX_PRESERIALIZED) answers.clear();
    const body = JSON.stringify({ channelId: served.channelId, channelToken: served.channelToken, expireTime: served.expireTime });
    const headers = ['Cache-Control', 'no-store', 'Content-Type', 'application/json; charset=utf-8', 'Content-Length', String(Buffer.byteLength(body))];
    const answer = { body, headers, expireTime: served.expireTime };
    answers.set(served.channelToken, answer);
    return answer;
  };

  const tryServe = (req: IncomingMessage, res: ServerResponse): boolean => {
    const started = performance.now();
    const url = req.url ?? '';
    let account: PolyvAccount | undefined;
    let channelId: string | undefined;
    let m = DEFAULT_ACCOUNT_PATH.exec(url);
    if (m !== null) {
      account = accounts.defaultAccount;
      channelId = m[1];
    } else if ((m = NAMED_ACCOUNT_PATH.exec(url)) !== null) {
      account = accounts.named(m[1] ?? '');
      channelId = m[2];
    }
    if (account === undefined || channelId === undefined) return false;
    // A request with a body (unusual on a GET) takes the express route, which applies the body limits.
    if (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0') return false;
    // A refusal (401, 429, 403) is answered by express, which decides it again alike (a 429 is remembered per request).
    const consumer = auth.authenticateOn(req.socket, req.headers.authorization);
    if (consumer instanceof BrokerError || auth.admit(req, consumer) !== undefined) return false;
    if (!mayRead(consumer, { account, channelId, kind: 'channel' })) return false;
    const served = service.peekToken(account, channelId);
    if (served === undefined) return false;
    const answer = answerFor(served);
    res.writeHead(200, answer.headers);
    res.end(answer.body);
    const seconds = (performance.now() - started) / 1000;
    hitDuration.observe(seconds);
    hitCounter(consumer.name).inc();
    if (hitSample > 0 && shouldLog('hit', hitSample)) {
      const path = url.split('?')[0] ?? '';
      const line: AccessLine = {
        consumer: consumer.name,
        route: `GET ${routeOf(path)}`,
        channelId: channelOfPath(path),
        status: 200,
        outcome: 'hit',
        durationMs: Math.round(seconds * 1_000_000) / 1000,
      };
      deps.accessLog?.logger.info(line, 'request');
    }
    return true;
  };

  return (req, res) => {
    if (req.method === 'GET' && tryServe(req, res)) return;
    app(req, res);
  };
}
