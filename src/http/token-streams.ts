import type { ServerResponse } from 'node:http';
import type { PolyvAccount } from '../config/config.js';
import type { Caller } from '../domain/caller.js';
import { BrokerError } from '../errors/broker-error.js';
import type { Logger } from '../lib/logger.js';
import type { BrokerMetrics } from '../metrics/broker-metrics.js';
import type { ChannelTokenFeed, FeedToken, FeedUpdate } from '../service/channel-token-feed.js';
import {
  HEARTBEAT_FRAME,
  STREAM_PREAMBLE,
  formatStreamEvent,
  multiplexedEventId,
  parseLastEventId,
} from './token-stream-events.js';

/** A comment is written to every stream this often, so that idle connections stay open through proxies. */
export const STREAM_HEARTBEAT_MS = 15_000;
/** A stream whose unsent bytes (beyond what the kernel took) exceed this is dropped: a slow reader. */
export const STREAM_MAX_BUFFERED_BYTES = 64 * 1024;
/** A stream that has not drained for this long is dropped, however little it holds back. */
export const STREAM_STALL_LIMIT_MS = 30_000;
/** At drain, a stream whose last bytes are not flushed by then is cut. */
const DRAIN_FORCE_CLOSE_MS = 1000;

export interface StreamTarget {
  readonly account: PolyvAccount;
  readonly channelId: string;
}

export interface StreamRequest {
  /** One channel (the channel's stream) or up to MAX_STREAM_CHANNELS (the multiplexed one), all of one account. */
  readonly targets: readonly StreamTarget[];
  readonly multiplexed: boolean;
  /** The request's `Last-Event-ID` header. */
  readonly lastEventId: string | string[] | undefined;
  /** The consumer: a cold channel's fetch is its (quota, attribution); its name goes to logs, never its key. */
  readonly caller: Caller;
}

export interface TokenStreamsOptions {
  feed: Pick<ChannelTokenFeed, 'watch' | 'current'>;
  /** BROKER_STREAM_MAX_CLIENTS: one stream more is answered 503 `too_many_streams`. */
  maxClients: number;
  metrics: BrokerMetrics;
  logger: Logger;
  heartbeatMs?: number;
  maxBufferedBytes?: number;
  stallLimitMs?: number;
}

/** What a stream last told its client about a channel. */
type Sent =
  | { readonly kind: 'token'; readonly version: number | undefined; readonly token: string | undefined; readonly expireTime: number }
  | { readonly kind: 'forgotten' };

interface OpenStream {
  readonly res: ServerResponse;
  readonly channelIds: readonly string[];
  readonly multiplexed: boolean;
  readonly consumer: string;
  readonly sent: Map<string, Sent>;
  /** Updates heard before the first events were written; offered right after them. */
  readonly early: Map<string, FeedUpdate>;
  readonly unwatch: Array<() => void>;
  ready: boolean;
  closed: boolean;
  /** Since when a write has been waiting for 'drain' (undefined: nothing held back). */
  stalledSince: number | undefined;
}

const RESPONSE_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-store',
  // Reverse proxies (nginx) would otherwise buffer the stream.
  'X-Accel-Buffering': 'no',
  // A stream's connection is not reused: when the broker ends a stream (drain), the socket closes with it.
  Connection: 'close',
} as const;

const channelOf = (u: FeedUpdate): string => (u.kind === 'token' ? u.token.channelId : u.channelId);

/** Whether `u` tells a client that last heard `prev` something new. */
function isNews(prev: Sent | undefined, u: FeedUpdate): boolean {
  if (u.kind === 'forgotten') return prev?.kind === 'token';
  if (prev === undefined || prev.kind === 'forgotten') return true;
  const t = u.token;
  if (t.version === undefined || prev.version === undefined) return t.channelToken !== prev.token;
  if (t.version === prev.version) return false;
  // Versions only grow, except when Redis lost its data and counts again from 1: then the token expires later.
  return t.version > prev.version || t.expireTime > prev.expireTime;
}

/**
 * The open token streams of this replica (Server-Sent Events): their first events, the updates the feed
 * hands them, heartbeats, and the limits that keep a replica safe: at most `maxClients` streams, a slow
 * reader dropped rather than buffered, every stream ended at drain (shutdown). One timer serves every stream.
 *
 * Each stream remembers what it last sent per channel and sends an update only when it is news to its client
 * (a newer version, or a `forgotten` after a token), which also skips what a reconnecting client's
 * `Last-Event-ID` says it holds. Tokens come from the feed, which never hands out one below the minimum TTL.
 */
export class TokenStreams {
  private readonly o: Required<TokenStreamsOptions>;
  private readonly streams = new Set<OpenStream>();
  /** The channel stream's frame of an update is the same for every stream: written once, sent to all. */
  private readonly frames = new WeakMap<FeedToken | FeedUpdate, string>();
  private heartbeat: NodeJS.Timeout | undefined;
  private draining = false;
  private readonly sentToken;
  private readonly sentForgotten;
  private readonly sentUnavailable;

  constructor(options: TokenStreamsOptions) {
    this.o = {
      heartbeatMs: STREAM_HEARTBEAT_MS,
      maxBufferedBytes: STREAM_MAX_BUFFERED_BYTES,
      stallLimitMs: STREAM_STALL_LIMIT_MS,
      ...options,
    };
    const events = options.metrics.streamEventsSent;
    this.sentToken = events.labels({ event: 'token' });
    this.sentForgotten = events.labels({ event: 'forgotten' });
    this.sentUnavailable = events.labels({ event: 'unavailable' });
  }

  /** Streams open now (those still sending their first events included). */
  get open(): number {
    return this.streams.size;
  }

  /**
   * Opens a stream on `res` and writes its first events: each channel's current token (unless the client's
   * `Last-Event-ID` says it holds it). Rejects, before anything is written, when the replica is draining or
   * full, or when the only channel of a channel's stream has no token to serve (as `GET .../token` would);
   * on the multiplexed stream such a channel gets an `unavailable` event instead, and its token follows
   * when one is written.
   */
  async serve(res: ServerResponse, request: StreamRequest): Promise<void> {
    if (this.draining) throw new BrokerError('not_ready', 'this replica is shutting down: connect again', { retryAfterMs: 1000 });
    if (this.streams.size >= this.o.maxClients) {
      throw new BrokerError('too_many_streams', `this replica has ${this.o.maxClients} token streams open, its most: try again later`, {
        retryAfterMs: 5000,
      });
    }
    const channelIds = request.targets.map((t) => t.channelId);
    const s: OpenStream = {
      res,
      channelIds,
      multiplexed: request.multiplexed,
      consumer: request.caller.name,
      sent: new Map(),
      early: new Map(),
      unwatch: [],
      ready: false,
      closed: false,
      stalledSince: undefined,
    };
    for (const [channelId, version] of parseLastEventId(request.lastEventId, channelIds)) {
      s.sent.set(channelId, { kind: 'token', version, token: undefined, expireTime: Number.NEGATIVE_INFINITY });
    }
    this.add(s);
    // Watch before reading, so that no write between the read and the first event is missed.
    for (const t of request.targets) s.unwatch.push(this.o.feed.watch(t.account.appId, t.channelId, (u) => this.onUpdate(s, u)));
    const firsts = await Promise.allSettled(request.targets.map((t) => this.o.feed.current(t.account, t.channelId, request.caller)));
    if (s.closed) {
      // Drained while reading (the client gets its answer), or the client left (nothing to answer).
      if (this.draining) throw new BrokerError('not_ready', 'this replica is shutting down: connect again', { retryAfterMs: 1000 });
      return;
    }
    const only = firsts[0];
    if (!request.multiplexed && only?.status === 'rejected') {
      this.remove(s);
      throw only.reason;
    }
    res.writeHead(200, RESPONSE_HEADERS);
    res.on('drain', () => {
      s.stalledSince = undefined;
    });
    this.write(s, STREAM_PREAMBLE);
    firsts.forEach((first, i) => {
      if (first.status === 'fulfilled') this.offer(s, { kind: 'token', token: first.value });
      else this.sendUnavailable(s, channelIds[i]!, first.reason);
    });
    s.ready = true;
    for (const u of s.early.values()) this.offer(s, u);
    s.early.clear();
    this.startHeartbeat();
  }

  /** Ends every stream (their clients reconnect elsewhere) and refuses new ones; for shutdown. */
  drain(): void {
    this.draining = true;
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    for (const s of [...this.streams]) {
      this.remove(s);
      if (!s.res.headersSent) continue; // still reading its first token: answered by its request, then closed
      s.res.end();
      const force = setTimeout(() => s.res.destroy(), DRAIN_FORCE_CLOSE_MS);
      force.unref();
      s.res.once('close', () => clearTimeout(force));
    }
  }

  private add(s: OpenStream): void {
    this.streams.add(s);
    this.o.metrics.streamsOpen.inc();
    s.res.once('close', () => this.remove(s));
  }

  private remove(s: OpenStream): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s);
    this.o.metrics.streamsOpen.dec();
    for (const unwatch of s.unwatch) unwatch();
    s.early.clear();
  }

  private onUpdate(s: OpenStream, u: FeedUpdate): void {
    if (s.closed) return;
    if (!s.ready) {
      s.early.set(channelOf(u), u);
      return;
    }
    this.offer(s, u);
  }

  /** Sends the update if it is news to this stream's client, and remembers it. */
  private offer(s: OpenStream, u: FeedUpdate): void {
    const channelId = channelOf(u);
    if (!isNews(s.sent.get(channelId), u)) return;
    if (u.kind === 'token') {
      const t = u.token;
      s.sent.set(channelId, { kind: 'token', version: t.version, token: t.channelToken, expireTime: t.expireTime });
      if (this.write(s, this.frame(s, 'token', t))) this.sentToken.inc();
    } else {
      s.sent.set(channelId, { kind: 'forgotten' });
      if (this.write(s, this.frame(s, 'forgotten', u))) this.sentForgotten.inc();
    }
  }

  private frame(s: OpenStream, event: 'token' | 'forgotten', what: FeedToken | FeedUpdate): string {
    const data =
      'channelToken' in what
        ? { channelId: what.channelId, channelToken: what.channelToken, expireTime: what.expireTime }
        : { channelId: channelOf(what) };
    if (s.multiplexed) return formatStreamEvent(event, this.multiplexedId(s), data);
    let frame = this.frames.get(what);
    if (frame === undefined) {
      const id = 'channelToken' in what ? String(what.version ?? '') : '';
      frame = formatStreamEvent(event, id, data);
      this.frames.set(what, frame);
    }
    return frame;
  }

  private multiplexedId(s: OpenStream): string {
    return multiplexedEventId(s.channelIds, (channelId) => {
      const sent = s.sent.get(channelId);
      return sent?.kind === 'token' ? sent.version : undefined;
    });
  }

  private sendUnavailable(s: OpenStream, channelId: string, reason: unknown): void {
    let error: { code: string; message: string };
    if (reason instanceof BrokerError) {
      error = { code: reason.code, message: reason.message };
    } else {
      this.o.logger.error({ err: reason, channelId }, 'unexpected error reading the first token of a stream');
      error = { code: 'internal_error', message: 'internal error' };
    }
    if (this.write(s, formatStreamEvent('unavailable', this.multiplexedId(s), { channelId, error }))) this.sentUnavailable.inc();
  }

  /** Writes a frame, or drops the stream when its client does not keep up; whether the stream is still open. */
  private write(s: OpenStream, frame: string): boolean {
    if (s.closed) return false;
    if (!s.res.write(frame)) s.stalledSince ??= Date.now();
    if (s.res.writableLength > this.o.maxBufferedBytes) {
      this.dropSlow(s, 'buffered');
      return false;
    }
    return true;
  }

  private dropSlow(s: OpenStream, why: 'buffered' | 'stalled'): void {
    const bufferedBytes = s.res.writableLength;
    this.remove(s);
    s.res.destroy();
    this.o.metrics.streamSlowReaderDrops.inc();
    this.o.logger.warn(
      { consumer: s.consumer, channels: s.channelIds.length, why, bufferedBytes },
      'token stream dropped: its client does not read what is sent',
    );
  }

  private startHeartbeat(): void {
    if (this.heartbeat !== undefined || this.draining) return;
    this.heartbeat = setInterval(() => this.beat(), this.o.heartbeatMs);
    this.heartbeat.unref();
  }

  private beat(): void {
    if (this.streams.size === 0) {
      clearInterval(this.heartbeat);
      this.heartbeat = undefined;
      return;
    }
    const now = Date.now();
    for (const s of [...this.streams]) {
      if (!s.ready) continue;
      if (s.stalledSince !== undefined && now - s.stalledSince >= this.o.stallLimitMs) this.dropSlow(s, 'stalled');
      else this.write(s, HEARTBEAT_FRAME);
    }
  }
}
