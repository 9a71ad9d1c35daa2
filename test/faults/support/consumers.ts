import { Pool } from 'undici';
import { FAULT_KEY } from './fleet.js';

/** What a consumer does in one request. */
export type Op =
  | 'get' // GET /v1/channels/{id}/token of a warm channel
  | 'report-stale' // POST .../token/refresh with a token that is not the current one (costs nothing)
  | 'state' // GET /v1/channels/{id}
  | 'list' // GET /v1/channels
  | 'bad-key' // a wrong API key: 401
  | 'bad-id' // a malformed channel ID: 400
  | 'foreign'; // a channel PolyV says is not in the account: 404 (503 while PolyV itself fails)

export const OPS: readonly Op[] = ['get', 'report-stale', 'state', 'list', 'bad-key', 'bad-id', 'foreign'];
export type Mix = Partial<Record<Op, number>>;

/** Mixed traffic: mostly token reads, some compare-and-refresh reports, state reads and bad requests. */
export const MIXED: Mix = { get: 0.86, 'report-stale': 0.05, state: 0.03, list: 0.01, 'bad-key': 0.02, 'bad-id': 0.02, foreign: 0.01 };
/** Only the token routes. */
export const TOKENS_ONLY: Mix = { get: 0.95, 'report-stale': 0.05 };
/** Token routes and channel state reads (which answer 503 `not_ready` while Redis is unreachable). */
export const TOKENS_AND_STATE: Mix = { get: 0.9, 'report-stale': 0.05, state: 0.05 };

/** 503 codes that mean "no valid token can be had right now" (every other 5xx is a failure). */
export const NO_TOKEN_CODES: ReadonlySet<string> = new Set([
  'budget_exhausted',
  'upstream_unavailable',
  'upstream_rate_limited',
  'upstream_clock_skew',
  'upstream_bad_response',
  'not_ready',
]);

const FOREIGN_CHANNEL = '9999999';
const REQUEST_TIMEOUT_MS = 5000;

export interface SeenToken {
  readonly channel: string;
  readonly token: string;
  readonly expireTime: number;
  /** Start and end (epoch ms) of the first response that carried it. */
  readonly firstStart: number;
  readonly firstEnd: number;
  /** The simulator's verdict, asked as soon as the token was first seen. */
  check: { valid: boolean; reason?: string | undefined } | undefined;
}

/** Every response, column by column (hundreds of thousands of them: no object per response). */
export class Responses {
  readonly start: number[] = [];
  readonly end: number[] = [];
  readonly op: number[] = [];
  readonly replica: number[] = [];
  readonly channel: string[] = [];
  readonly status: number[] = [];
  /** Index into `tokens`, or -1. */
  readonly token: number[] = [];
  /** Error code of a non-200 JSON body, or transport error code; '' for none. */
  readonly code: string[] = [];
  /** For a 503 on a token read: the last token this replica had served for the channel (-1 none). */
  readonly candidate: number[] = [];

  get length(): number {
    return this.start.length;
  }
}

export interface DriverOptions {
  /** Base URLs of the API replicas. */
  targets: readonly string[];
  /** Warm channels consumers read. */
  channels: readonly string[];
  ratePerSec: number;
  concurrency: number;
  mix: Mix;
  /** Asks the simulator about a token the first time it is seen. */
  checkToken: (channelId: string, token: string) => Promise<{ valid: boolean; reason?: string }>;
  /** The consumer's API key (default FAULT_KEY, consumer `faults`). */
  apiKey?: string;
}

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Concurrent consumers over keep-alive pools, paced to a total rate, spread round-robin over the API
 * replicas. Records every response; every token it receives goes to the audit.
 */
export class LoadDriver {
  readonly responses = new Responses();
  readonly tokens: SeenToken[] = [];
  private readonly tokenIndex = new Map<string, number>();
  private readonly lastServed = new Map<string, number>();
  private readonly pools: Pool[];
  private readonly pendingChecks: number[] = [];
  private checking = 0;
  private stopped = false;
  private loops: Array<Promise<void>> = [];
  private o: DriverOptions;
  private cumulative: Array<[Op, number]> = [];
  private rr = 0;

  constructor(options: DriverOptions) {
    this.o = options;
    this.setMix(options.mix);
    const perTarget = Math.ceil(options.concurrency / options.targets.length) + 2;
    this.pools = options.targets.map((url) => new Pool(url, { connections: perTarget, keepAliveTimeout: 30_000 }));
  }

  setMix(mix: Mix): void {
    let sum = 0;
    const total = Object.values(mix).reduce((a, b) => a + (b ?? 0), 0);
    this.cumulative = OPS.filter((op) => (mix[op] ?? 0) > 0).map((op) => [op, (sum += (mix[op] ?? 0) / total)]);
  }

  setRate(ratePerSec: number): void {
    this.o = { ...this.o, ratePerSec };
  }

  setChannels(channels: readonly string[]): void {
    this.o = { ...this.o, channels };
  }

  start(): void {
    this.stopped = false;
    this.loops = Array.from({ length: this.o.concurrency }, (_, i) => this.loop(i));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
    while (this.checking > 0 || this.pendingChecks.length > 0) await sleep(20);
  }

  async close(): Promise<void> {
    await this.stop();
    await Promise.all(this.pools.map((p) => p.close()));
  }

  /** Waits until every token seen so far has its simulator verdict. */
  async checksDone(): Promise<void> {
    while (this.checking > 0 || this.pendingChecks.length > 0) await sleep(20);
  }

  private async loop(i: number): Promise<void> {
    let next = now() + (i * 1000) / this.o.ratePerSec;
    while (!this.stopped) {
      const wait = next - now();
      if (wait > 0) await sleep(wait);
      if (this.stopped) break;
      const interval = (this.o.concurrency * 1000) / this.o.ratePerSec;
      next = Math.max(next + interval, now() - interval);
      await this.once();
    }
  }

  private pickOp(): Op {
    const r = Math.random();
    for (const [op, upTo] of this.cumulative) if (r < upTo) return op;
    return 'get';
  }

  /** One request of a random kind to the next replica; recorded whatever happens. */
  async once(forced?: { op: Op; channel: string; replica?: number; body?: unknown }): Promise<{ status: number; code: string; token?: string; retryAfter?: string }> {
    const op = forced?.op ?? this.pickOp();
    const replica = forced?.replica ?? this.rr++ % this.pools.length;
    const channels = this.o.channels;
    const channel = forced?.channel ?? channels[Math.floor(Math.random() * channels.length)] ?? '0';
    let method: 'GET' | 'POST' = 'GET';
    let path = `/v1/channels/${channel}/token`;
    let key = this.o.apiKey ?? FAULT_KEY;
    let body: string | undefined;
    switch (op) {
      case 'report-stale':
        method = 'POST';
        path = `/v1/channels/${channel}/token/refresh`;
        body = JSON.stringify(forced?.body ?? { rejectedToken: 'f'.repeat(32) });
        break;
      case 'state':
        path = `/v1/channels/${channel}`;
        break;
      case 'list':
        path = '/v1/channels';
        break;
      case 'bad-key':
        key = 'not-a-valid-consumer-key-000000';
        break;
      case 'bad-id':
        path = '/v1/channels/12ab/token';
        break;
      case 'foreign':
        path = `/v1/channels/${FOREIGN_CHANNEL}/token`;
        break;
      case 'get':
        break;
    }
    const start = now();
    let status = 0;
    let code = '';
    let parsed: Record<string, unknown> | undefined;
    let retryAfter: string | undefined;
    try {
      const res = await this.pools[replica]!.request({
        method,
        path,
        headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body }),
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
      });
      status = res.statusCode;
      const ra = res.headers['retry-after'];
      retryAfter = typeof ra === 'string' ? ra : undefined;
      const text = await res.body.text();
      try {
        parsed = JSON.parse(text) as Record<string, unknown>;
      } catch {
        parsed = undefined;
      }
      if (status !== 200) code = String((parsed?.['error'] as { code?: string } | undefined)?.code ?? '');
    } catch (err) {
      code = `transport:${(err as { code?: string }).code ?? (err as Error).name}`;
    }
    const end = now();
    this.record(op, replica, channel, start, end, status, code, parsed);
    const token = status === 200 && typeof parsed?.['channelToken'] === 'string' ? parsed['channelToken'] : undefined;
    return { status, code, ...(token === undefined ? {} : { token }), ...(retryAfter === undefined ? {} : { retryAfter }) };
  }

  private record(op: Op, replica: number, channel: string, start: number, end: number, status: number, code: string, body: Record<string, unknown> | undefined): void {
    const r = this.responses;
    let tokenIdx = -1;
    let candidate = -1;
    const isTokenOp = op === 'get' || op === 'report-stale';
    const servedKey = `${replica}\u0000${channel}`;
    if (isTokenOp && status === 200 && body !== undefined) {
      const token = String(body['channelToken']);
      const expireTime = Number(body['expireTime']);
      const key = `${channel}\u0000${token}`;
      const known = this.tokenIndex.get(key);
      if (known === undefined) {
        tokenIdx = this.tokens.length;
        this.tokens.push({ channel, token, expireTime, firstStart: start, firstEnd: end, check: undefined });
        this.tokenIndex.set(key, tokenIdx);
        this.pendingChecks.push(tokenIdx);
        this.pumpChecks();
      } else {
        tokenIdx = known;
      }
      this.lastServed.set(servedKey, tokenIdx);
    } else if (op === 'get' && status === 503) {
      candidate = this.lastServed.get(servedKey) ?? -1;
    }
    r.start.push(start);
    r.end.push(end);
    r.op.push(OPS.indexOf(op));
    r.replica.push(replica);
    r.channel.push(channel);
    r.status.push(status);
    r.token.push(tokenIdx);
    r.code.push(code);
    r.candidate.push(candidate);
  }

  private pumpChecks(): void {
    while (this.checking < 4 && this.pendingChecks.length > 0) {
      const idx = this.pendingChecks.shift()!;
      const t = this.tokens[idx]!;
      this.checking += 1;
      void this.o
        .checkToken(t.channel, t.token)
        .then(
          (verdict) => {
            t.check = verdict;
          },
          (err: unknown) => {
            t.check = { valid: false, reason: `check failed: ${(err as Error).message}` };
          },
        )
        .finally(() => {
          this.checking -= 1;
          this.pumpChecks();
        });
    }
  }
}
