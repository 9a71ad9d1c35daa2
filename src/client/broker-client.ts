import { Agent, request, type Dispatcher } from 'undici';
import { BrokerClientError, CLIENT_ERROR_CODES } from './broker-client-error.js';
import { isInvalidTokenResponse } from './is-invalid-token-response.js';
import { SingleFlight, TokenCache, type ClientClock } from './token-cache.js';
import { TokenStreamFollower } from './token-stream-follower.js';

export { BrokerClientError, CLIENT_ERROR_CODES } from './broker-client-error.js';
export type { BrokerClientErrorOptions, BrokerErrorCode, ClientErrorCode } from './broker-client-error.js';
export { isInvalidTokenResponse, POLYV_INVALID_TOKEN_CODE } from './is-invalid-token-response.js';
export type { ClientClock } from './token-cache.js';

export const DEFAULT_REFRESH_MARGIN_MS = 60_000;
export const DEFAULT_TIMEOUT_MS = 5_000;
export const DEFAULT_POLL_INTERVAL_MS = 30_000;
/** The broker sends a heartbeat every 15 s: after three missed, a stream is taken for dead and replaced. */
const STREAM_IDLE_TIMEOUT_MS = 45_000;
/** A newly followed channel's stream has this long to tell its token before the channel is polled. */
const STREAM_GRACE_MS = 2_000;
/** When a stream goes down, its channels are polled at a random moment within this window (not all at once). */
const POLL_SPREAD_MS = 1_000;
const DEFAULT_CONNECTIONS = 16;
const KEEP_ALIVE_TIMEOUT_MS = 10_000;
/** The broker's answers are a few hundred bytes; anything this large is not the broker. */
const MAX_RESPONSE_BYTES = 256 * 1024;
const MAX_MESSAGE_LENGTH = 300;
/** As the broker's route validation (`invalid_channel_id`). */
const CHANNEL_ID_RE = /^\d{1,20}$/;
const ACCOUNT_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_TOKEN_LENGTH = 4096;

export interface BrokerClientOptions {
  /** Where the broker listens, e.g. `http://broker:8080` (a path prefix is kept). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`; never appears in an error message. */
  apiKey: string;
  /** A named PolyV account of the broker (`/v1/accounts/{account}/...`); unset: the default account (`/v1/channels/...`). */
  account?: string | undefined;
  /** Stop serving a cached token this long before its `expireTime`. Default 60 000. */
  refreshMarginMs?: number | undefined;
  /** Total time for one broker call (connect, headers, body). Default 5 000. */
  timeoutMs?: number | undefined;
  /** An undici dispatcher to send through (not closed by `close()`); by default a keep-alive Agent the client owns. */
  dispatcher?: Dispatcher | undefined;
  /** "Now" in ms since the epoch, for the cache. Default `Date.now`. */
  clock?: ClientClock | undefined;
  /**
   * Keep the cache current from the broker's token stream: every channel read is followed (multiplexed
   * streams, 100 channels each), and a new token replaces the cached one the moment the broker announces it,
   * so `getChannelToken` and `withChannelToken` never use a replaced token once its event has arrived.
   * While a stream is down its channels are polled (`pollIntervalMs`) and it reconnects after jittered waits.
   * Default false.
   */
  stream?: boolean | undefined;
  /** While a channel's stream is down, its token is polled this often (subscriptions, and `stream: true`). Default 30 000. */
  pollIntervalMs?: number | undefined;
}

/** What `subscribe` returns: `close()` stops the calls (and, unless `stream: true`, following the channel). */
export interface TokenSubscription {
  close(): void;
}

export interface SubscribeOptions {
  /**
   * Told of every failure the subscription meets and survives: the stream down or refused (a BrokerClientError,
   * while the channel is polled), a failed poll, and anything `onToken` throws. Default: ignored.
   */
  onError?: ((error: unknown) => void) | undefined;
}

interface Subscriber {
  readonly onToken: (token: ChannelToken) => void;
  readonly onError: ((error: unknown) => void) | undefined;
  /** The token this subscriber was last given. */
  last: ChannelToken | undefined;
  closed: boolean;
}

/** `GET /v1/channels/{channelId}/token`: PolyV's channel token, `expireTime` in ms since the epoch. */
export interface ChannelToken {
  readonly channelId: string;
  readonly channelToken: string;
  readonly expireTime: number;
}

type Method = 'GET' | 'POST';

interface BrokerCall<T> {
  method: Method;
  /** Below the account's base path, e.g. `/channels/1000001/token`. */
  path: string;
  body?: unknown;
  channelId: string;
  parse: (json: unknown) => T | undefined;
  /** Values the error messages of this call must never contain (the API key is always added). */
  secrets?: readonly string[];
}

/** Response parsers (the network is input too): undefined when the JSON is not what the route promises. */
function channelTokenOf(expectedChannelId: string): (json: unknown) => ChannelToken | undefined {
  return (json) => {
    if (typeof json !== 'object' || json === null) return undefined;
    const { channelId, channelToken, expireTime } = json as Record<string, unknown>;
    if (channelId !== expectedChannelId || typeof channelToken !== 'string' || channelToken === '') return undefined;
    if (typeof expireTime !== 'number' || !Number.isFinite(expireTime)) return undefined;
    return { channelId, channelToken, expireTime };
  };
}

/**
 * A typed client of the broker's HTTP API (v1) for internal Node services. It caches each token in memory
 * until `expireTime - refreshMarginMs`, shares one request among concurrent callers of a channel, and
 * `withChannelToken` reports a token PolyV rejected and retries once with the new one.
 *
 * Adding a route: a parser, a cache key kind, and a method that calls `this.tokens.get(...)` with
 * `this.call({...})`, as `getChannelToken` does.
 */
export class BrokerClient {
  private readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly accountPath: string;
  private readonly timeoutMs: number;
  private readonly clock: ClientClock;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly tokens: TokenCache<ChannelToken>;
  private readonly reports = new SingleFlight<ChannelToken>();
  private readonly streamCache: boolean;
  private readonly pollIntervalMs: number;
  private readonly subscribers = new Map<string, Set<Subscriber>>();
  /** Channels whose stream the client follows (subscribed ones, and every one read with `stream: true`). */
  private readonly followed = new Set<string>();
  private readonly polls = new SingleFlight<ChannelToken>();
  private readonly pollSoon = new Map<string, NodeJS.Timeout>();
  private pollTimer: NodeJS.Timeout | undefined;
  private follower: TokenStreamFollower | undefined;
  /** The streams' own connections (when the client owns its dispatcher): a stream holds its connection for good. */
  private streamDispatcher: Agent | undefined;
  private closed = false;

  constructor(options: BrokerClientOptions) {
    const url = parseBaseUrl(options.baseUrl);
    if (typeof options.apiKey !== 'string' || options.apiKey.trim() === '') {
      throw new TypeError('BrokerClient: apiKey is required');
    }
    if (options.account !== undefined && !ACCOUNT_RE.test(options.account)) {
      throw new TypeError('BrokerClient: account must be 1-64 letters, digits, _ . or -');
    }
    const refreshMarginMs = options.refreshMarginMs ?? DEFAULT_REFRESH_MARGIN_MS;
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(refreshMarginMs) || refreshMarginMs < 0) {
      throw new TypeError('BrokerClient: refreshMarginMs must be a number >= 0');
    }
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new TypeError('BrokerClient: timeoutMs must be a number > 0');
    const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    if (!Number.isFinite(pollIntervalMs) || pollIntervalMs < 100) throw new TypeError('BrokerClient: pollIntervalMs must be a number >= 100');

    this.baseUrl = url;
    this.apiKey = options.apiKey;
    this.accountPath = options.account === undefined ? '/v1' : `/v1/accounts/${encodeURIComponent(options.account)}`;
    this.timeoutMs = timeoutMs;
    this.clock = options.clock ?? { now: () => Date.now() };
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher =
      options.dispatcher ??
      new Agent({
        connections: DEFAULT_CONNECTIONS,
        keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
        connect: { timeout: timeoutMs },
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    this.tokens = new TokenCache<ChannelToken>(this.clock, refreshMarginMs);
    this.streamCache = options.stream === true;
    this.pollIntervalMs = pollIntervalMs;
  }

  /** The channel's current token: from memory while fresh, else one broker request shared by concurrent callers. */
  async getChannelToken(channelId: string): Promise<ChannelToken> {
    this.assertOpen(channelId);
    assertChannelId(channelId);
    if (this.streamCache) this.follow(channelId);
    return this.tokens.get(channelKey(channelId), () =>
      this.call({ method: 'GET', path: `/channels/${channelId}/token`, channelId, parse: channelTokenOf(channelId) }),
    );
  }

  /**
   * Tells the broker PolyV rejected `rejectedToken` (compare-and-refresh) and returns the channel's new
   * token, which replaces the cached one. Concurrent reports of one token share one request. If the report
   * fails, the rejected token is dropped from the cache all the same.
   */
  async reportRejected(channelId: string, rejectedToken: string): Promise<ChannelToken> {
    this.assertOpen(channelId);
    assertChannelId(channelId);
    if (typeof rejectedToken !== 'string' || rejectedToken === '' || rejectedToken.length > MAX_TOKEN_LENGTH) {
      throw new BrokerClientError(`rejectedToken must be a string of 1-${MAX_TOKEN_LENGTH} characters`, {
        code: CLIENT_ERROR_CODES.invalidRequest,
        channelId,
      });
    }
    const key = channelKey(channelId);
    return this.reports.run(`${key}\n${rejectedToken}`, async () => {
      try {
        const fresh = await this.call({
          method: 'POST',
          path: `/channels/${channelId}/token/refresh`,
          body: { rejectedToken },
          channelId,
          parse: channelTokenOf(channelId),
          secrets: [rejectedToken],
        });
        this.tokens.set(key, fresh);
        return fresh;
      } catch (err) {
        this.tokens.delete(key, (cached) => cached.channelToken !== rejectedToken);
        throw err;
      }
    });
  }

  /**
   * Runs `fn` with the channel's token. If `fn` throws or returns something `isInvalidTokenResponse` calls
   * PolyV's `code 15, invalid token.`, the token is reported (`reportRejected`) and `fn` runs once more with
   * the new one; what that second run returns or throws is passed on as is. A failed report throws its
   * BrokerClientError.
   */
  async withChannelToken<R>(channelId: string, fn: (channelToken: string) => R | Promise<R>): Promise<R> {
    const first = await this.getChannelToken(channelId);
    let result: R;
    try {
      result = await fn(first.channelToken);
    } catch (err) {
      if (!isInvalidTokenResponse(err)) throw err;
      const fresh = await this.renewRejected(channelId, first.channelToken);
      return fn(fresh.channelToken);
    }
    if (!isInvalidTokenResponse(result)) return result;
    const fresh = await this.renewRejected(channelId, first.channelToken);
    return fn(fresh.channelToken);
  }

  /**
   * Calls `onToken` with the channel's current token and then with every new one, the moment the broker
   * writes it (on any replica), over the broker's token stream; never twice with the same token. While the
   * stream is down the token is polled every `pollIntervalMs` and the stream reconnects after jittered
   * waits; `Last-Event-ID` spares the tokens already told. The cache follows the stream too.
   */
  subscribe(channelId: string, onToken: (token: ChannelToken) => void, options: SubscribeOptions = {}): TokenSubscription {
    this.assertOpen(channelId);
    assertChannelId(channelId);
    if (typeof onToken !== 'function') throw new TypeError('BrokerClient.subscribe: onToken must be a function');
    const sub: Subscriber = { onToken, onError: options.onError, last: undefined, closed: false };
    let subs = this.subscribers.get(channelId);
    if (subs === undefined) {
      subs = new Set();
      this.subscribers.set(channelId, subs);
    }
    subs.add(sub);
    this.follow(channelId);
    const cached = this.tokens.peek(channelKey(channelId));
    if (cached !== undefined) queueMicrotask(() => this.deliverTo(sub, cached, false));
    const all = subs;
    return {
      close: () => {
        if (sub.closed) return;
        sub.closed = true;
        all.delete(sub);
        if (all.size > 0 || this.subscribers.get(channelId) !== all) return;
        this.subscribers.delete(channelId);
        if (!this.streamCache) this.unfollow(channelId);
      },
    };
  }

  /** Forgets every cached token, ends the streams and closes the client's own connections (after in-flight requests finish). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.tokens.clear();
    if (this.pollTimer !== undefined) clearTimeout(this.pollTimer);
    for (const timer of this.pollSoon.values()) clearTimeout(timer);
    this.pollSoon.clear();
    for (const subs of this.subscribers.values()) for (const sub of subs) sub.closed = true;
    this.subscribers.clear();
    this.followed.clear();
    await this.follower?.close();
    await this.streamDispatcher?.close();
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private follow(channelId: string): void {
    if (this.followed.has(channelId)) return;
    this.followed.add(channelId);
    this.follower ??= this.createFollower();
    this.follower.follow(channelId);
    this.pollLater(channelId, STREAM_GRACE_MS);
    if (this.pollTimer === undefined) this.schedulePolls();
  }

  private unfollow(channelId: string): void {
    this.followed.delete(channelId);
    this.follower?.unfollow(channelId);
    const soon = this.pollSoon.get(channelId);
    if (soon !== undefined) clearTimeout(soon);
    this.pollSoon.delete(channelId);
  }

  private createFollower(): TokenStreamFollower {
    if (this.ownsDispatcher) {
      this.streamDispatcher = new Agent({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS, connect: { timeout: this.timeoutMs } });
    }
    return new TokenStreamFollower({
      streamBase: `${this.baseUrl}${this.accountPath}`,
      apiKey: this.apiKey,
      dispatcher: this.streamDispatcher ?? this.dispatcher,
      headersTimeoutMs: this.timeoutMs,
      idleTimeoutMs: STREAM_IDLE_TIMEOUT_MS,
      parseToken: (json, channelId) => channelTokenOf(channelId)(json),
      handlers: {
        token: (token) => {
          // The stream is authoritative: its token replaces the cached one, and a GET already under way cannot undo it.
          this.tokens.set(channelKey(token.channelId), token);
          this.deliver(token.channelId, token, true);
        },
        forgotten: (channelId) => this.tokens.delete(channelKey(channelId)),
        down: (channelIds, error) => {
          for (const channelId of channelIds) {
            this.reportError(channelId, error);
            this.pollLater(channelId, Math.random() * POLL_SPREAD_MS);
          }
        },
      },
    });
  }

  /** Every `pollIntervalMs` (±20 %), polls each followed channel whose stream is down. */
  private schedulePolls(): void {
    if (this.closed) return;
    const wait = this.pollIntervalMs * (0.8 + 0.4 * Math.random());
    this.pollTimer = setTimeout(() => {
      for (const channelId of this.followed) void this.poll(channelId);
      this.schedulePolls();
    }, wait);
    this.pollTimer.unref();
  }

  private pollLater(channelId: string, delayMs: number): void {
    if (this.closed || this.pollSoon.has(channelId)) return;
    const timer = setTimeout(() => {
      this.pollSoon.delete(channelId);
      void this.poll(channelId);
    }, delayMs);
    timer.unref();
    this.pollSoon.set(channelId, timer);
  }

  /** Reads the channel's token from the broker (not the cache) while its stream cannot tell it. */
  private async poll(channelId: string): Promise<void> {
    if (this.closed || !this.followed.has(channelId) || this.follower?.isLive(channelId) === true) return;
    let fresh: ChannelToken;
    try {
      fresh = await this.polls.run(channelId, () =>
        this.call({ method: 'GET', path: `/channels/${channelId}/token`, channelId, parse: channelTokenOf(channelId) }),
      );
    } catch (err) {
      this.reportError(channelId, err);
      return;
    }
    // The stream came back meanwhile: what it tells is newer than what this poll read.
    if (this.closed || this.follower?.isLive(channelId) === true) return;
    const key = channelKey(channelId);
    const cached = this.tokens.peek(key);
    if (cached === undefined || (cached.channelToken !== fresh.channelToken && fresh.expireTime >= cached.expireTime)) this.tokens.set(key, fresh);
    this.deliver(channelId, fresh, false);
  }

  private deliver(channelId: string, token: ChannelToken, fromStream: boolean): void {
    const subs = this.subscribers.get(channelId);
    if (subs === undefined) return;
    for (const sub of [...subs]) this.deliverTo(sub, token, fromStream);
  }

  /** Gives a subscriber a token it has not had; a polled or cached token older than the last one given is skipped. */
  private deliverTo(sub: Subscriber, token: ChannelToken, fromStream: boolean): void {
    if (sub.closed) return;
    const last = sub.last;
    if (last !== undefined && (last.channelToken === token.channelToken || (!fromStream && token.expireTime < last.expireTime))) return;
    sub.last = token;
    try {
      sub.onToken(token);
    } catch (err) {
      tell(sub, err);
    }
  }

  private reportError(channelId: string, error: unknown): void {
    for (const sub of this.subscribers.get(channelId) ?? []) tell(sub, error);
  }

  /** A token another caller already replaced is not reported again: the cache holds its successor. */
  private async renewRejected(channelId: string, rejectedToken: string): Promise<ChannelToken> {
    const cached = this.tokens.peek(channelKey(channelId));
    if (cached !== undefined && cached.channelToken !== rejectedToken) return cached;
    return this.reportRejected(channelId, rejectedToken);
  }

  private assertOpen(channelId: string): void {
    if (this.closed) throw new BrokerClientError('the broker client is closed', { code: CLIENT_ERROR_CODES.clientClosed, channelId });
  }

  /** One HTTP request to the broker; returns the parsed body of a 2xx answer, throws BrokerClientError otherwise. */
  private async call<T>(spec: BrokerCall<T>): Promise<T> {
    const path = `${this.accountPath}${spec.path}`;
    const what = `${spec.method} ${path}`;
    const secrets = [this.apiKey, ...(spec.secrets ?? [])];
    const signal = AbortSignal.timeout(this.timeoutMs);
    let status: number;
    let retryAfter: string | string[] | undefined;
    let text: string;
    try {
      const res = await request(`${this.baseUrl}${path}`, {
        method: spec.method,
        dispatcher: this.dispatcher,
        headers: {
          authorization: `Bearer ${this.apiKey}`,
          accept: 'application/json',
          ...(spec.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(spec.body === undefined ? {} : { body: JSON.stringify(spec.body) }),
        signal,
      });
      status = res.statusCode;
      retryAfter = res.headers['retry-after'];
      text = await readLimited(res.body, MAX_RESPONSE_BYTES);
    } catch (err) {
      if (err instanceof BrokerClientError) throw err;
      throw transportError(err, what, this.timeoutMs, signal.aborted, spec.channelId);
    }

    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }

    if (status >= 200 && status < 300) {
      const parsed = spec.parse(json);
      if (parsed !== undefined) return parsed;
      throw new BrokerClientError(`broker answered ${what} with ${status} but not the documented JSON`, {
        status,
        code: CLIENT_ERROR_CODES.badResponse,
        channelId: spec.channelId,
      });
    }

    const retryAfterMs = parseRetryAfter(retryAfter, this.clock.now());
    const body = parseErrorBody(json);
    if (body === undefined) {
      throw new BrokerClientError(`broker answered ${what} with ${status} without its JSON error body`, {
        status,
        code: CLIENT_ERROR_CODES.badResponse,
        retryAfterMs,
        channelId: spec.channelId,
      });
    }
    const message = redact(body.message, secrets).slice(0, MAX_MESSAGE_LENGTH);
    throw new BrokerClientError(`broker answered ${what} with ${status} ${body.code}: ${message}`, {
      status,
      code: body.code,
      retryAfterMs,
      channelId: spec.channelId,
    });
  }
}

const channelKey = (channelId: string): string => `channel:${channelId}`;

/** Hands an error to a subscriber's `onError`; what that throws in turn is dropped (it has nowhere else to go). */
function tell(sub: Subscriber, error: unknown): void {
  if (sub.closed || sub.onError === undefined) return;
  try {
    sub.onError(error);
  } catch {
    // nothing more to do
  }
}

function assertChannelId(channelId: unknown): asserts channelId is string {
  if (typeof channelId !== 'string' || !CHANNEL_ID_RE.test(channelId)) {
    throw new BrokerClientError('channelId must be 1-20 digits', { code: CLIENT_ERROR_CODES.invalidChannelId });
  }
}

function parseBaseUrl(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new TypeError('BrokerClient: baseUrl must be an absolute http(s) URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError('BrokerClient: baseUrl must be http(s)');
  if (url.username !== '' || url.password !== '') throw new TypeError('BrokerClient: baseUrl must not hold credentials');
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

async function readLimited(body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    size += buf.length;
    if (size > maxBytes) {
      body.destroy();
      throw new BrokerClientError(`broker answer larger than ${maxBytes} bytes`, { code: CLIENT_ERROR_CODES.badResponse });
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseErrorBody(json: unknown): { code: string; message: string } | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const error = (json as Record<string, unknown>)['error'];
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, message } = error as Record<string, unknown>;
  if (typeof code !== 'string' || code === '') return undefined;
  return { code, message: typeof message === 'string' ? message : '' };
}

/** Retry-After as delay-seconds or an HTTP-date, in ms from `now`; undefined when absent or unreadable. */
function parseRetryAfter(header: string | string[] | undefined, now: number): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (value === undefined || value === '') return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Network failures and timeouts. The cause is kept for debugging; undici's errors hold neither key nor body. */
function transportError(err: unknown, what: string, timeoutMs: number, aborted: boolean, channelId: string): BrokerClientError {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  const name = err instanceof Error ? err.name : 'Error';
  if (aborted || (typeof code === 'string' && TIMEOUT_CODES.has(code)) || name === 'TimeoutError') {
    return new BrokerClientError(`broker did not answer ${what} within ${timeoutMs} ms`, {
      code: CLIENT_ERROR_CODES.timeout,
      channelId,
      cause: err,
    });
  }
  const detail = typeof code === 'string' && /^[A-Z0-9_]{1,40}$/.test(code) ? code : name;
  return new BrokerClientError(`broker could not be reached for ${what} (${detail})`, {
    code: CLIENT_ERROR_CODES.networkError,
    channelId,
    cause: err,
  });
}

function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret !== '') out = out.split(secret).join('[redacted]');
  return out;
}
