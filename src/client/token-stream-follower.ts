import { request, type Dispatcher } from 'undici';
import { BrokerClientError, CLIENT_ERROR_CODES } from './broker-client-error.js';
import { SseParser, type ServerSentEvent } from './sse-parser.js';

/** As the broker's MAX_STREAM_CHANNELS: channels one multiplexed stream may follow. */
export const MAX_CHANNELS_PER_STREAM = 100;
/** Reconnection waits: a random time up to min(cap, base * 2^(failures - 1)), at least the floor. */
export const RECONNECT_BASE_MS = 1000;
export const RECONNECT_CAP_MS = 15_000;
const RECONNECT_FLOOR_MS = 100;
/** After an answer that retrying soon cannot fix (401, 403, 404, 400), the next try waits this long. */
const REFUSED_RETRY_MS = 60_000;
/** Channels added or removed within this window restart their stream once. */
const RESTART_DEBOUNCE_MS = 10;

/** A channel token as the stream's `token` events carry it (the JSON of `GET .../token`). */
export interface StreamedToken {
  readonly channelId: string;
  readonly channelToken: string;
  readonly expireTime: number;
}

export interface TokenStreamHandlers {
  /** A new current token of a followed channel (or the first one a connection sends). */
  token(token: StreamedToken): void;
  /** The channel's token was forgotten by the broker (`DELETE`). */
  forgotten(channelId: string): void;
  /** The stream of these channels is down (or one channel is unavailable on it): poll them until it is back. */
  down(channelIds: readonly string[], error: BrokerClientError): void;
}

export interface TokenStreamFollowerOptions {
  /** `{baseUrl}{accountPath}`: the stream is `{streamBase}/token-stream?channels=...`. */
  streamBase: string;
  apiKey: string;
  dispatcher: Dispatcher;
  /** For the response headers. */
  headersTimeoutMs: number;
  /** No byte (not even a heartbeat) for this long: the connection is taken for dead and replaced. */
  idleTimeoutMs: number;
  parseToken: (json: unknown, channelId: string) => StreamedToken | undefined;
  handlers: TokenStreamHandlers;
  random?: () => number;
}

/** Reads `channelId:version,...` (the multiplexed stream's event ID). */
function parseVersions(id: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const entry of id.split(',')) {
    const m = /^(\d{1,20}):(\d{1,15})$/.exec(entry);
    if (m !== null) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

function channelIdIn(data: unknown): string | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const id = (data as Record<string, unknown>)['channelId'];
  return typeof id === 'string' ? id : undefined;
}

/**
 * One multiplexed stream (`GET .../token-stream?channels=...`) for up to MAX_CHANNELS_PER_STREAM channels,
 * kept open: on any failure or end it reconnects after a jittered, growing wait, sending the versions it
 * holds as `Last-Event-ID`, so the broker sends only what is new. A change of its channels reconnects at once.
 */
class StreamGroup {
  readonly channels = new Set<string>();
  /** The broker's view of what this client holds: the last event ID, read back. */
  private versions = new Map<string, number>();
  /** Channels whose current token this connection has told (or confirmed through Last-Event-ID). */
  private readonly live = new Set<string>();
  private up = false;
  private closed = false;
  private failures = 0;
  private restartRequested = false;
  private controller: AbortController | undefined;
  private running: Promise<void> | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly o: TokenStreamFollowerOptions) {}

  isLive(channelId: string): boolean {
    return this.up && this.live.has(channelId);
  }

  remove(channelId: string): void {
    this.channels.delete(channelId);
    this.versions.delete(channelId);
    this.live.delete(channelId);
  }

  /** (Re)connects with the current channels, once per burst of changes. */
  restart(): void {
    if (this.closed || this.debounce !== undefined) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      if (this.running === undefined) {
        this.running = this.run().finally(() => {
          this.running = undefined;
        });
        return;
      }
      this.restartRequested = true;
      this.controller?.abort();
      this.wake?.();
    }, RESTART_DEBOUNCE_MS);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.debounce !== undefined) clearTimeout(this.debounce);
    this.debounce = undefined;
    this.controller?.abort();
    this.wake?.();
    await this.running;
  }

  private async run(): Promise<void> {
    while (!this.closed && this.channels.size > 0) {
      this.restartRequested = false;
      const channels = [...this.channels];
      let error: BrokerClientError;
      try {
        await this.connect(channels);
        error = new BrokerClientError('the broker ended the token stream', { code: CLIENT_ERROR_CODES.networkError });
      } catch (err) {
        error = this.failureOf(err);
      }
      const wasUp = this.up;
      this.up = false;
      this.live.clear();
      if (this.closed) return;
      if (this.restartRequested) continue;
      // After a connection that was up (a replica draining, say) the count starts again from one.
      this.failures = wasUp ? 1 : this.failures + 1;
      this.o.handlers.down(channels, error);
      await this.sleep(this.delayAfter(error, wasUp));
    }
  }

  private delayAfter(error: BrokerClientError, wasUp: boolean): number {
    if (error.status !== undefined && !error.retryable) return REFUSED_RETRY_MS;
    const random = this.o.random ?? Math.random;
    const ceiling = Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** Math.max(0, this.failures - 1));
    const jittered = Math.max(RECONNECT_FLOOR_MS, Math.round(random() * (wasUp ? RECONNECT_BASE_MS : ceiling)));
    return Math.max(jittered, error.retryAfterMs ?? 0);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }

  private failureOf(err: unknown): BrokerClientError {
    if (err instanceof BrokerClientError) return err;
    const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
    const detail = typeof code === 'string' && /^[A-Z0-9_]{1,40}$/.test(code) ? code : err instanceof Error ? err.name : 'Error';
    const timeout = code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT';
    return new BrokerClientError(`the token stream broke (${detail})`, {
      code: timeout ? CLIENT_ERROR_CODES.timeout : CLIENT_ERROR_CODES.networkError,
      cause: err,
    });
  }

  private async connect(channels: readonly string[]): Promise<void> {
    const controller = new AbortController();
    this.controller = controller;
    const held = channels.flatMap((ch) => {
      const v = this.versions.get(ch);
      return v === undefined ? [] : [`${ch}:${v}`];
    });
    const res = await request(`${this.o.streamBase}/token-stream?channels=${channels.join(',')}`, {
      method: 'GET',
      dispatcher: this.o.dispatcher,
      headers: {
        authorization: `Bearer ${this.o.apiKey}`,
        accept: 'text/event-stream',
        ...(held.length === 0 ? {} : { 'last-event-id': held.join(',') }),
      },
      signal: controller.signal,
      headersTimeout: this.o.headersTimeoutMs,
      bodyTimeout: this.o.idleTimeoutMs,
    });
    if (res.statusCode !== 200) {
      const text = await res.body.text().catch(() => '');
      throw refusal(res.statusCode, res.headers['retry-after'], text);
    }
    this.failures = 0;
    this.up = true;
    // What the broker skipped because Last-Event-ID said we hold it is current.
    for (const ch of channels) if (this.versions.has(ch)) this.live.add(ch);
    const parser = new SseParser();
    const decoder = new TextDecoder();
    for await (const chunk of res.body) {
      for (const event of parser.push(decoder.decode(chunk as Uint8Array, { stream: true }))) this.onEvent(event, channels);
    }
  }

  private onEvent(e: ServerSentEvent, channels: readonly string[]): void {
    let data: unknown;
    try {
      data = JSON.parse(e.data);
    } catch {
      return;
    }
    const channelId = channelIdIn(data);
    if (channelId === undefined || !channels.includes(channelId)) return;
    if (e.event === 'token') {
      const token = this.o.parseToken(data, channelId);
      if (token === undefined) return;
      if (e.id !== undefined) this.versions = parseVersions(e.id);
      this.live.add(channelId);
      this.o.handlers.token(token);
    } else if (e.event === 'forgotten') {
      if (e.id !== undefined) this.versions = parseVersions(e.id);
      this.live.add(channelId);
      this.o.handlers.forgotten(channelId);
    } else if (e.event === 'unavailable') {
      this.live.delete(channelId);
      const error = (data as { error?: { code?: unknown } }).error;
      const code = typeof error?.code === 'string' ? error.code : 'unavailable';
      this.o.handlers.down([channelId], new BrokerClientError(`the broker has no token for channel ${channelId} yet (${code})`, { code, channelId }));
    }
  }
}

/** A non-200 answer to the stream request, as the error the broker's JSON body names (never quoting a token or key). */
function refusal(status: number, retryAfter: string | string[] | undefined, text: string): BrokerClientError {
  let code = CLIENT_ERROR_CODES.badResponse as string;
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown } };
    if (typeof body.error?.code === 'string' && /^[a-z_]{1,64}$/.test(body.error.code)) code = body.error.code;
  } catch {
    // not the broker's JSON
  }
  const value = (Array.isArray(retryAfter) ? retryAfter[0] : retryAfter)?.trim();
  const retryAfterMs = value !== undefined && /^\d+$/.test(value) ? Number(value) * 1000 : undefined;
  return new BrokerClientError(`broker answered the token stream request with ${status} ${code}`, { status, code, retryAfterMs });
}

/**
 * The broker's token streams for every channel a client follows, in multiplexed streams of up to
 * MAX_CHANNELS_PER_STREAM channels. Tells its handlers each new token, each forgotten one, and when a
 * channel's stream is down (so that its channels are polled meanwhile).
 */
export class TokenStreamFollower {
  private readonly groups: StreamGroup[] = [];
  private readonly groupOf = new Map<string, StreamGroup>();

  constructor(private readonly o: TokenStreamFollowerOptions) {}

  follows(channelId: string): boolean {
    return this.groupOf.has(channelId);
  }

  /** Whether the channel's stream is up and has told its current token. */
  isLive(channelId: string): boolean {
    return this.groupOf.get(channelId)?.isLive(channelId) === true;
  }

  follow(channelId: string): void {
    if (this.groupOf.has(channelId)) return;
    let group = this.groups.find((g) => g.channels.size < MAX_CHANNELS_PER_STREAM);
    if (group === undefined) {
      group = new StreamGroup(this.o);
      this.groups.push(group);
    }
    group.channels.add(channelId);
    this.groupOf.set(channelId, group);
    group.restart();
  }

  unfollow(channelId: string): void {
    const group = this.groupOf.get(channelId);
    if (group === undefined) return;
    this.groupOf.delete(channelId);
    group.remove(channelId);
    if (group.channels.size > 0) {
      group.restart();
      return;
    }
    this.groups.splice(this.groups.indexOf(group), 1);
    void group.close();
  }

  async close(): Promise<void> {
    const groups = this.groups.splice(0);
    this.groupOf.clear();
    await Promise.all(groups.map((g) => g.close()));
  }
}
